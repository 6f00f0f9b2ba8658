package libvirttest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
)

// InstanceDir holds the directories of the other hypervisors Instance
// starts, one directory each.
const InstanceDir = "/run/virtconsole-libvirttest"

// MaxInstance is the highest instance number Instance accepts.
const MaxInstance = 100

// libvirt's directories on a Debian host, which an instance has its own
// copy of: configuration (domains, secrets), state, runtime (sockets,
// domains' runtime state), cache and logs.
var instanceMounts = []struct{ sub, dir string }{
	{"etc", "/etc/libvirt"},
	{"lib", "/var/lib/libvirt"},
	{"run", "/run/libvirt"},
	{"cache", "/var/cache/libvirt"},
	{"log", "/var/log/libvirt"},
}

// Instance starts (or reuses) another hypervisor on this host and returns
// it: a second libvirtd of its own, number n (2 to MaxInstance), with its
// own configuration, domains, secrets, state and sockets, as on another
// machine. It runs in a mount namespace of its own in which
// InstanceDir/hv<n>'s etc, lib, run, cache and log directories are
// mounted over /etc/libvirt, /var/lib/libvirt, /run/libvirt,
// /var/cache/libvirt and /var/log/libvirt (ImageDir stays the host's), so
// that a privileged libvirtd (qemu:///system, QEMU as libvirt-qemu) shares
// nothing with the host's but the QEMU binary, /dev/kvm and the
// certificates of TLSDir; its read-write socket appears to the host at
// InstanceDir/hv<n>/run/libvirt-sock, and its URI is qemu:///system with
// that ?socket=. Its qemu.conf has Start's TLS block, QEMU's output in
// files (stdio_handler "file": no virtlogd of its own) and graphics ports
// from 20000+200n (200 of them), apart from other instances'. It has no
// TCP or TLS listener. Like Start's libvirtd it stays running after the
// test; Kill and Restart stop and start it.
//
// Start runs first (the host's libvirtd, TLSDir), with its skips.
func Instance(t testing.TB, n int) *Daemon {
	t.Helper()
	Start(t)
	qemutest.Need(t, "unshare")
	if n < 2 || n > MaxInstance {
		t.Fatalf("libvirttest.Instance(%d): want 2 to %d (1 is Start's libvirtd)", n, MaxInstance)
	}
	root := filepath.Join(InstanceDir, "hv"+strconv.Itoa(n))
	sock := filepath.Join(root, "run", "libvirt-sock")
	d := &Daemon{URI: "qemu:///system?socket=" + sock, Socket: sock, pidFile: filepath.Join(root, "libvirtd.pid"), instance: root}
	startMu.Lock()
	defer startMu.Unlock()
	if err := d.configureInstance(n); err != nil {
		t.Fatal(err)
	}
	if err := d.ensureInstance(); err != nil {
		t.Fatal(err)
	}
	return d
}

// configureInstance makes the instance's directories and writes its
// libvirtd.conf (empty: the defaults, no listener) and qemu.conf.
func (d *Daemon) configureInstance(n int) error {
	for _, m := range instanceMounts {
		if err := os.MkdirAll(filepath.Join(d.instance, m.sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(d.instance, "lib", "images"), 0o755); err != nil {
		return err
	}
	first := 20000 + 200*n
	qemu := confBlock() + fmt.Sprintf("stdio_handler = \"file\"\nremote_display_port_min = %d\nremote_display_port_max = %d\n", first, first+199)
	etc := filepath.Join(d.instance, "etc")
	if err := os.WriteFile(filepath.Join(etc, "qemu.conf"), []byte(qemu), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(etc, "libvirtd.conf"), nil, 0o644)
}

// ensureInstance starts the instance's libvirtd unless it runs, and
// waits until it answers.
func (d *Daemon) ensureInstance() error {
	if alive(d.pidFile) && answers(d.URI) {
		return nil
	}
	if !alive(d.pidFile) {
		os.Remove(d.Socket)
		// The images directory first, so that the mount over
		// /var/lib/libvirt carries it (--rbind).
		script := "set -e; mount --bind " + ImageDir + " " + filepath.Join(d.instance, "lib", "images")
		for _, m := range instanceMounts {
			script += "; mount --rbind " + filepath.Join(d.instance, m.sub) + " " + m.dir
		}
		script += "; exec libvirtd --daemon --pid-file " + d.pidFile
		if err := os.MkdirAll(ImageDir, 0o755); err != nil {
			return err
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
		if out, err := cmd.CombinedOutput(); err != nil && !alive(d.pidFile) {
			return fmt.Errorf("start libvirtd %s: %v: %s", d.instance, err, out)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for !answers(d.URI) {
		if time.Now().After(deadline) {
			return fmt.Errorf("libvirtd %s does not answer on %s after 30s", d.instance, d.Socket)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
