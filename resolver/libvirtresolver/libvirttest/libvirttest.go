// Package libvirttest gives tests a real libvirtd and diskless TCG
// domains on it, the way net/http/httptest gives them an HTTP server. It is
// imported only by tests.
//
// Start makes sure virtlogd and libvirtd run (it starts them without
// systemd, or reuses running ones, and leaves them running for the next
// test) with TLS for QEMU's VNC and SPICE, host-wide as libvirt has it:
// the first Start on a machine mints certificates into TLSDir, adds them
// to qemu.conf and restarts libvirtd; NewDomain defines and starts a small domain from a template and
// destroys and undefines it (and the secrets made for it) when the test
// ends; LinuxGuest puts the tiny Linux guest of qemutest where libvirt's
// QEMU can read it, until the test ends. As with qemutest, missing
// programs skip a test locally and fail it when CI is set. Tests drive
// libvirt with virsh, independently of the code they test.
//
// What stays on the host after the tests: TLSDir, a marked block at the
// end of qemu.conf and of libvirtd.conf, and virtlogd and libvirtd
// running, libvirtd with --listen (TLS on 127.0.0.1:16514), and those of
// Instance (other hypervisors) with their directories; /dev/kvm, if
// any, group kvm and mode 0660. Setting NoLibvirtEnv keeps the tests from
// making any of these changes.
package libvirttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
)

const (
	// URI is the libvirt URI of the daemon Start provides.
	URI = "qemu:///system"
	// Socket is libvirtd's read-write socket.
	Socket = "/run/libvirt/libvirt-sock"
	// ImageDir is where libvirt's QEMU (user libvirt-qemu) can read
	// kernels and initrds.
	ImageDir = "/var/lib/libvirt/images"

	libvirtdPIDFile = "/run/libvirtd.pid"
	virtlogdPIDFile = "/run/virtlogd.pid"
	virtlogdSocket  = "/run/libvirt/virtlogd-sock"
)

// Daemon is the libvirtd that tests talk to.
type Daemon struct {
	// URI is the libvirt URI to connect to.
	URI string
	// Socket is the path of its read-write socket.
	Socket string

	// pidFile is libvirtd's PID file; instance is the root of an
	// Instance's directories ("" for the host's libvirtd).
	pidFile  string
	instance string
}

var (
	kvmOnce   sync.Once
	startMu   sync.Mutex
	theDaemon = &Daemon{URI: URI, Socket: Socket, pidFile: libvirtdPIDFile}
)

// NoLibvirtEnv is the environment variable that keeps the libvirt tests
// off a machine: when it is set, Start skips the test (fails it when CI is
// set), before it changes anything. "make test-unit" sets it.
const NoLibvirtEnv = "VIRTCONSOLE_NO_LIBVIRT"

// Start makes sure virtlogd and libvirtd run and answer, and returns the
// daemon. Missing binaries skip t locally and fail it when CI is set; so
// do not being root (libvirtd's system instance needs it) and NoLibvirtEnv.
//
// It changes the host, for good: see the package comment.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if os.Getenv(NoLibvirtEnv) != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(NoLibvirtEnv + " is set under CI, where every libvirt test must run: unset it")
		}
		t.Skip(NoLibvirtEnv + " is set: skipped, as it would reconfigure and restart the host's libvirtd")
	}
	qemutest.Need(t, "libvirtd", "virtlogd", "virsh", qemutest.Binary)
	if os.Geteuid() != 0 {
		msg := "libvirt tests need root (libvirtd's system instance, qemu:///system)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	kvmOnce.Do(fixKVM)
	startMu.Lock()
	defer startMu.Unlock()
	if err := ensure(); err != nil {
		t.Fatal(err)
	}
	return theDaemon
}

// fixKVM makes /dev/kvm usable by group kvm: when libvirt cannot open it,
// it re-probes QEMU on every call and a define takes ~50 s (TESTBED.md).
func fixKVM() {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return
	}
	exec.Command("chgrp", "kvm", "/dev/kvm").Run()
	os.Chmod("/dev/kvm", 0o660)
}

// ensure starts whichever daemon is not running and waits for libvirtd's
// socket to answer.
func ensure() error {
	if !alive(virtlogdPIDFile) {
		if out, err := exec.Command("virtlogd", "-d").CombinedOutput(); err != nil && !alive(virtlogdPIDFile) {
			return fmt.Errorf("start virtlogd: %v: %s", err, out)
		}
		if err := waitSocket(virtlogdSocket, 10*time.Second); err != nil {
			return fmt.Errorf("virtlogd: %w", err)
		}
	}
	restart, err := setUpTLS()
	if err != nil {
		return err
	}
	// A libvirtd started before (by hand, or without --listen) has no TLS
	// listener: restart it too.
	if alive(libvirtdPIDFile) && answers(URI) && !listensTLS() {
		restart = true
	}
	if restart && alive(libvirtdPIDFile) {
		if err := stop(libvirtdPIDFile); err != nil {
			return err
		}
	}
	if alive(libvirtdPIDFile) && answers(URI) {
		return nil
	}
	if !alive(libvirtdPIDFile) {
		if out, err := exec.Command("libvirtd", "--daemon", "--listen").CombinedOutput(); err != nil && !alive(libvirtdPIDFile) {
			return fmt.Errorf("start libvirtd: %v: %s", err, out)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !answers(URI) || !listensTLS() {
		if time.Now().After(deadline) {
			return fmt.Errorf("libvirtd does not answer on %s and %s after 30s", Socket, libvirtdTLSAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func pidOf(pidFile string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func alive(pidFile string) bool {
	pid := pidOf(pidFile)
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func waitSocket(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// answers reports whether the libvirtd of uri serves API calls.
func answers(uri string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "virsh", "-c", uri, "uri").Run() == nil
}

// PID returns libvirtd's process ID, or 0.
func (d *Daemon) PID() int { return pidOf(d.pidFile) }

// Kill stops libvirtd (SIGTERM, then SIGKILL) and waits until it is gone.
// Running domains survive; Restart (or Start) brings libvirtd back and it
// reconnects to them.
func (d *Daemon) Kill(t testing.TB) {
	t.Helper()
	startMu.Lock()
	defer startMu.Unlock()
	if err := stop(d.pidFile); err != nil {
		t.Fatal(err)
	}
}

// stop ends the daemon of pidFile (SIGTERM, then SIGKILL) and waits until
// it is gone.
func stop(pidFile string) error {
	pid := pidOf(pidFile)
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return nil
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	killed := false
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("libvirttest: %s (pid %d) does not stop", filepath.Base(pidFile), pid)
			}
			syscall.Kill(pid, syscall.SIGKILL)
			killed = true
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// Restart starts libvirtd again after Kill and waits until it answers.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	startMu.Lock()
	defer startMu.Unlock()
	ensureIt := ensure
	if d.instance != "" {
		ensureIt = d.ensureInstance
	}
	if err := ensureIt(); err != nil {
		t.Fatal(err)
	}
}

// Virsh runs virsh against the daemon and returns its standard output;
// a failure fails t with virsh's error message.
func (d *Daemon) Virsh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.TryVirsh(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TryVirsh is Virsh returning the error instead.
func (d *Daemon) TryVirsh(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", d.URI}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("virsh %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// DomainOptions describe a test domain: a diskless TCG PC (machine pc,
// no balloon) with, by default, a pty serial port and its console.
type DomainOptions struct {
	// MemoryMiB defaults to 64, or 128 with a Kernel.
	MemoryMiB int
	// VNC adds VNC graphics on 127.0.0.1 (autoport unless VNCPort).
	VNC         bool
	VNCPort     int
	VNCPassword string
	// SPICE adds SPICE graphics on 127.0.0.1 with autoport: a plain and
	// a TLS port, unless SPICEPlainOnly (defaultMode='insecure': no TLS
	// port).
	SPICE          bool
	SPICEPassword  string
	SPICEPlainOnly bool
	// NoPTY leaves out the pty serial port and console.
	NoPTY bool
	// TCPSerial adds a serial port on a TCP chardev listening on
	// 127.0.0.1 (after the pty one), with TLS (certificates from TLSDir,
	// client certificates required) if TCPSerialTLS.
	TCPSerial    bool
	TCPSerialTLS bool
	// Kernel, Initrd and Cmdline boot a kernel directly (LinuxGuest);
	// without them SeaBIOS prints to the serial port and stops.
	Kernel, Initrd, Cmdline string
	// Metadata is extra XML inside <metadata>.
	Metadata string
	// Paused starts the domain paused.
	Paused bool
	// NoStart only defines the domain.
	NoStart bool
}

// Domain is a test domain.
type Domain struct {
	d    *Daemon
	Name string
	UUID string
	// TCPPort is the port of the TCP serial chardev, if any.
	TCPPort int
}

var domainTemplate = template.Must(template.New("domain").Parse(`<domain type='qemu'>
  <name>{{.Name}}</name>
  <uuid>{{.UUID}}</uuid>
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>1</vcpu>
  {{- if .Metadata}}
  <metadata>{{.Metadata}}</metadata>
  {{- end}}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    {{- if .Kernel}}
    <kernel>{{.Kernel}}</kernel>
    <initrd>{{.Initrd}}</initrd>
    <cmdline>{{.Cmdline}}</cmdline>
    {{- else if or (not .NoPTY) .TCPSerial}}
    <bios useserial='yes'/>
    {{- end}}
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    {{- if .VNC}}
    <graphics type='vnc' {{if .VNCPort}}port='{{.VNCPort}}' autoport='no'{{else}}autoport='yes'{{end}} listen='127.0.0.1'{{if .VNCPassword}} passwd='{{.VNCPassword}}'{{end}}>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    {{- end}}
    {{- if .SPICE}}
    <graphics type='spice' autoport='yes' listen='127.0.0.1'{{if .SPICEPassword}} passwd='{{.SPICEPassword}}'{{end}}{{if .SPICEPlainOnly}} defaultMode='insecure'{{end}}>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    {{- end}}
    {{- if or .VNC .SPICE}}
    <video><model type='vga'/></video>
    {{- end}}
    {{- if not .NoPTY}}
    <serial type='pty'><target port='0'/></serial>
    {{- end}}
    {{- if .TCPSerial}}
    <serial type='tcp'>
      <source mode='bind' host='127.0.0.1' service='{{.TCPPort}}'{{if .TCPSerialTLS}} tls='yes'{{end}}/>
      <protocol type='raw'/>
      <target port='{{if .NoPTY}}0{{else}}1{{end}}'/>
    </serial>
    {{- end}}
    {{- if not .NoPTY}}
    <console type='pty'><target type='serial' port='0'/></console>
    {{- end}}
    <memballoon model='none'/>
  </devices>
</domain>
`))

var nameRE = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// NewDomain defines a domain from o (named after the test, with a random
// suffix) and starts it unless o.NoStart; the test's cleanup destroys and
// undefines it, and undefines every secret whose description names the
// domain's UUID: the tokens "virtconsole enable" (libvirtresolver's
// Conn.Enable) made for it, which would otherwise outlive it.
func (d *Daemon) NewDomain(t testing.TB, o DomainOptions) *Domain {
	t.Helper()
	x, err := d.render(t, o)
	if err != nil {
		t.Fatal(err)
	}
	dom := &Domain{d: d, Name: x.name, UUID: x.uuid, TCPPort: x.tcpPort}
	f := filepath.Join(t.TempDir(), "domain.xml")
	if err := os.WriteFile(f, []byte(x.xml), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Virsh(t, "define", f)
	t.Cleanup(func() {
		d.TryVirsh("destroy", dom.UUID)
		if _, err := d.TryVirsh("undefine", dom.UUID); err != nil && !strings.Contains(err.Error(), "ailed to get domain") {
			t.Logf("cleanup: %v", err)
		}
		if err := d.undefineSecretsOf(dom.UUID); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	if !o.NoStart {
		if o.Paused {
			d.Virsh(t, "start", "--paused", dom.UUID)
		} else {
			d.Virsh(t, "start", dom.UUID)
		}
	}
	return dom
}

var (
	secretUUIDRE = regexp.MustCompile(`<uuid>([0-9a-f-]+)</uuid>`)
	secretDescRE = regexp.MustCompile(`<description>([^<]*)</description>`)
)

// undefineSecretsOf undefines the secrets whose description contains
// domUUID (libvirtresolver names the domain there). One virsh process
// dumps every secret: virsh runs ";"-separated commands in turn and goes
// on past one that fails (a secret undefined meanwhile).
func (d *Daemon) undefineSecretsOf(domUUID string) error {
	list, err := d.TryVirsh("secret-list")
	if err != nil {
		return err
	}
	var dump []string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			dump = append(dump, "secret-dumpxml "+f[0])
		}
	}
	if len(dump) == 0 {
		return nil
	}
	out, _ := d.TryVirsh(strings.Join(dump, "; "))
	var undefine []string
	for _, x := range strings.Split(out, "</secret>") {
		u, desc := secretUUIDRE.FindStringSubmatch(x), secretDescRE.FindStringSubmatch(x)
		if u != nil && desc != nil && strings.Contains(desc[1], domUUID) {
			undefine = append(undefine, u[1])
		}
	}
	for _, u := range undefine {
		if _, err := d.TryVirsh("secret-undefine", u); err != nil && !strings.Contains(err.Error(), "ecret not found") {
			return err
		}
	}
	return nil
}

type domainXML struct {
	xml, name, uuid string
	tcpPort         int
}

// render renders the template for o, with a fresh name and UUID.
func (d *Daemon) render(t testing.TB, o DomainOptions) (domainXML, error) {
	t.Helper()
	uuid := newUUID()
	base := nameRE.ReplaceAllString(t.Name(), "-")
	if len(base) > 40 {
		base = base[len(base)-40:]
	}
	name := "vct-" + strings.Trim(base, "-") + "-" + uuid[:6]
	if o.MemoryMiB == 0 {
		o.MemoryMiB = 64
		if o.Kernel != "" {
			o.MemoryMiB = 128
		}
	}
	if o.Kernel != "" && o.Cmdline == "" {
		o.Cmdline = qemutest.GuestCmdline
	}
	data := struct {
		DomainOptions
		Name, UUID string
		TCPPort    int
	}{DomainOptions: o, Name: name, UUID: uuid}
	if o.TCPSerial {
		data.TCPPort = qemutest.FreePort(t)
	}
	var b bytes.Buffer
	if err := domainTemplate.Execute(&b, data); err != nil {
		return domainXML{}, err
	}
	return domainXML{xml: b.String(), name: name, uuid: uuid, tcpPort: data.TCPPort}, nil
}

// Virsh runs virsh against the domain's daemon.
func (dom *Domain) Virsh(t testing.TB, args ...string) string {
	t.Helper()
	return dom.d.Virsh(t, args...)
}

// Start starts the (defined, stopped) domain.
func (dom *Domain) Start(t testing.TB) { t.Helper(); dom.d.Virsh(t, "start", dom.UUID) }

// Destroy stops the domain at once.
func (dom *Domain) Destroy(t testing.TB) { t.Helper(); dom.d.Virsh(t, "destroy", dom.UUID) }

// XML returns the live XML (the config when inactive is true), with
// secure fields.
func (dom *Domain) XML(t testing.TB, inactive bool) string {
	t.Helper()
	args := []string{"dumpxml", "--security-info", dom.UUID}
	if inactive {
		args = append(args, "--inactive")
	}
	return dom.d.Virsh(t, args...)
}

var (
	vncPortRE      = regexp.MustCompile(`<graphics type='vnc' port='(\d+)'`)
	spicePortRE    = regexp.MustCompile(`<graphics type='spice' port='(\d+)'`)
	spiceTLSPortRE = regexp.MustCompile(`<graphics type='spice' [^>]*tlsPort='(\d+)'`)
)

// SPICEPorts returns the live plain and TLS ports of the running domain's
// SPICE graphics (0 for one it does not have).
func (dom *Domain) SPICEPorts(t testing.TB) (port, tlsPort int) {
	t.Helper()
	x := dom.XML(t, false)
	if m := spicePortRE.FindStringSubmatch(x); m != nil {
		port, _ = strconv.Atoi(m[1])
	}
	if m := spiceTLSPortRE.FindStringSubmatch(x); m != nil {
		tlsPort, _ = strconv.Atoi(m[1])
	}
	if port == 0 && tlsPort == 0 {
		t.Fatalf("domain %s has no SPICE port in its live XML", dom.Name)
	}
	return port, tlsPort
}

// VNCPort returns the live VNC port of the running domain.
func (dom *Domain) VNCPort(t testing.TB) int {
	t.Helper()
	m := vncPortRE.FindStringSubmatch(dom.XML(t, false))
	if m == nil {
		t.Fatalf("domain %s has no VNC port in its live XML", dom.Name)
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// SetMetadata sets the console-proxy metadata (the inner <console>
// elements) live and in the config, as an operator would with virsh.
func (dom *Domain) SetMetadata(t testing.TB, consoles string, live bool) {
	t.Helper()
	args := []string{"metadata", dom.UUID, "http://libvirt.org/schemas/console-proxy/1.0", "--key", "lcp", "--config"}
	if live {
		args = append(args, "--live")
	}
	args = append(args, "--set", "<consoles>"+consoles+"</consoles>")
	dom.d.Virsh(t, args...)
}

// Secret defines a secret with value and returns its UUID; cleanup
// undefines it.
func (d *Daemon) Secret(t testing.TB, value string) string {
	t.Helper()
	uuid := newUUID()
	f := filepath.Join(t.TempDir(), "secret.xml")
	x := "<secret ephemeral='no' private='no'><uuid>" + uuid + "</uuid><description>virtconsole test</description></secret>"
	if err := os.WriteFile(f, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	d.Virsh(t, "secret-define", f)
	t.Cleanup(func() { d.TryVirsh("secret-undefine", uuid) })
	d.SetSecret(t, uuid, value)
	return uuid
}

func newUUID() string {
	var rnd [16]byte
	rand.Read(rnd[:])
	rnd[6] = rnd[6]&0x0f | 0x40
	rnd[8] = rnd[8]&0x3f | 0x80
	h := hex.EncodeToString(rnd[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// SetSecret sets a secret's value.
func (d *Daemon) SetSecret(t testing.TB, uuid, value string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "value")
	os.WriteFile(f, []byte(value), 0o600)
	d.Virsh(t, "secret-set-value", uuid, "--file", f, "--plain")
}

// SecretExists reports whether a secret is defined.
func (d *Daemon) SecretExists(t testing.TB, uuid string) bool {
	t.Helper()
	_, err := d.TryVirsh("secret-dumpxml", uuid)
	return err == nil
}

// LinuxGuest returns copies of qemutest.LinuxGuest's kernel and initrd
// in ImageDir (mode 644), where libvirt's QEMU can read them; the test's
// cleanup removes them.
func LinuxGuest(t testing.TB) (kernel, initrd string) {
	t.Helper()
	k, i := qemutest.LinuxGuest(t)
	if err := os.MkdirAll(ImageDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return copyImage(t, k, "virtconsole-vmlinuz"), copyImage(t, i, "virtconsole-initrd")
}

// copyImage copies src to a new file in ImageDir, named prefix and a
// random suffix, that the test's cleanup removes. Each test has its own
// copy: a shared one could be removed under another test's domain.
func copyImage(t testing.TB, src, prefix string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.CreateTemp(ImageDir, prefix+"-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(out.Name()) })
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Chmod(0o644)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return out.Name()
}
