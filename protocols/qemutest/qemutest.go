// Package qemutest starts real QEMU processes for tests: the one way the
// project's tests get a VNC server, a SPICE server or a serial chardev to
// talk to. Like net/http/httptest it is imported only by tests.
//
// Tests that need QEMU (or another external program) call Require or
// Need: locally a missing program skips the test with a message; when the
// CI environment variable is set it fails the test, because CI installs
// everything and a silent skip there would hide a broken install.
package qemutest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Binary is the QEMU system emulator the tests run.
const Binary = "qemu-system-x86_64"

// Need returns the paths of the named programs. A missing one skips t
// with a message, or fails t when CI is set.
func Need(t testing.TB, programs ...string) []string {
	t.Helper()
	paths := make([]string, len(programs))
	for i, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s not found in PATH; CI must install it (see .ci/run)", p)
			}
			t.Skipf("%s not found in PATH; install it to run this test (see .ci/run)", p)
		}
		paths[i] = path
	}
	return paths
}

// Require returns the path of the QEMU binary, as Need does.
func Require(t testing.TB) string {
	t.Helper()
	return Need(t, Binary)[0]
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// QEMU is a running QEMU process with a QMP monitor.
type QEMU struct {
	t      testing.TB
	cmd    *exec.Cmd
	dir    string
	qmp    net.Conn
	qmpR   *bufio.Reader
	mu     sync.Mutex // serialises QMP commands
	stderr *Buffer
	done   chan struct{}
}

// Start runs QEMU with the common arguments (TCG, 64 MiB unless args set
// -m, no default devices, no display) plus args, waits until its QMP
// monitor answers (by then its chardevs listen; VNC and SPICE may not yet,
// which StartVNC and StartSPICE wait for), and kills it when the test
// ends.
func Start(t testing.TB, args ...string) *QEMU {
	t.Helper()
	bin := Require(t)
	dir, err := os.MkdirTemp("", "qemutest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	base := []string{"-accel", "tcg", "-nodefaults", "-display", "none",
		"-qmp", "unix:" + sock + ",server=on,wait=off"}
	if !hasFlag(args, "-m") {
		base = append(base, "-m", "64")
	}
	q := &QEMU{t: t, dir: dir, stderr: &Buffer{}, done: make(chan struct{})}
	q.cmd = exec.Command(bin, append(base, args...)...)
	q.cmd.Stdout = q.stderr
	q.cmd.Stderr = q.stderr
	if err := q.cmd.Start(); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	go func() { q.cmd.Wait(); close(q.done) }()
	t.Cleanup(func() {
		// A failed test often failed because QEMU went away: say so.
		if t.Failed() {
			select {
			case <-q.done:
				t.Logf("QEMU had exited (%v); its output:\n%s", q.cmd.ProcessState, q.Output())
			default:
				t.Logf("QEMU's output:\n%s", q.Output())
			}
		}
		q.Kill()
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.Dial("unix", sock)
		if err == nil {
			q.qmp = c
			break
		}
		select {
		case <-q.done:
			t.Fatalf("QEMU exited at start: %s\nargs: %q", q.Output(), args)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's QMP socket did not appear within 30s: %s", q.Output())
		}
	}
	q.qmpR = bufio.NewReader(q.qmp)
	q.qmp.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := q.qmpR.ReadBytes('\n'); err != nil { // greeting
		t.Fatalf("QMP greeting: %v: %s", err, q.Output())
	}
	if _, err := q.QMP("qmp_capabilities", nil); err != nil {
		t.Fatalf("QMP: %v", err)
	}
	return q
}

func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		if a == flag {
			return true
		}
	}
	return false
}

// QMP runs one monitor command and returns its "return" value.
func (q *QEMU) QMP(command string, arguments any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": command}
	if arguments != nil {
		req["arguments"] = arguments
	}
	b, _ := json.Marshal(req)
	q.qmp.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := q.qmp.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	for {
		line, err := q.qmpR.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", command, err)
		}
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class, Desc string
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("QMP %s: %w", command, err)
		}
		switch {
		case resp.Event != "":
			continue // asynchronous event, not our answer
		case resp.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
		default:
			return resp.Return, nil
		}
	}
}

// Cont resumes a QEMU started with -S.
func (q *QEMU) Cont() {
	q.t.Helper()
	if _, err := q.QMP("cont", nil); err != nil {
		q.t.Fatal(err)
	}
}

// WaitChardevConnected polls until the socket chardev id has a client
// connected (QMP query-chardev shows a "<->" peer), so that a test can
// resume a paused guest knowing its first byte will be seen.
func (q *QEMU) WaitChardevConnected(id string, timeout time.Duration) {
	q.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		raw, err := q.QMP("query-chardev", nil)
		if err != nil {
			q.t.Fatal(err)
		}
		var devs []struct{ Label, Filename string }
		json.Unmarshal(raw, &devs)
		for _, d := range devs {
			if d.Label == id && strings.Contains(d.Filename, "<->") {
				return
			}
		}
		select {
		case <-q.done:
			q.t.Fatalf("QEMU exited: %s", q.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	q.t.Fatalf("chardev %s: no client connected within %v", id, timeout)
}

// Alive reports whether the QEMU process is still running.
func (q *QEMU) Alive() bool {
	select {
	case <-q.done:
		return false
	default:
		return true
	}
}

// Output returns what QEMU printed so far.
func (q *QEMU) Output() string { return q.stderr.String() }

// Kill stops QEMU and waits for it to exit.
func (q *QEMU) Kill() {
	if q.qmp != nil {
		q.qmp.Close()
	}
	if q.cmd.Process != nil {
		q.cmd.Process.Kill()
	}
	<-q.done
}

// PID is QEMU's process ID.
func (q *QEMU) PID() int { return q.cmd.Process.Pid }

// TLSObject returns the -object argument for QEMU's x509 credentials in
// dir (ca-cert.pem, server-cert.pem, server-key.pem) with id tls0.
func TLSObject(dir string, verifyPeer bool) string {
	return fmt.Sprintf("tls-creds-x509,id=tls0,endpoint=server,dir=%s,verify-peer=%s", dir, onOff(verifyPeer))
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// SerialOptions configures StartSerial.
type SerialOptions struct {
	// TLSDir, if set, makes the chardev TLS with the credentials there.
	TLSDir string
	// VerifyPeer makes QEMU require a client certificate.
	VerifyPeer bool
	// Paused starts the guest stopped (-S) so that nothing is printed
	// before the test has connected and calls Cont.
	Paused bool
	// Monitor attaches QEMU's human monitor to the chardev instead of the
	// guest's serial port: a real peer that answers typed commands
	// ("info version\n"), for tests of bytes sent toward QEMU.
	Monitor bool
	// Guest boots the tiny Linux guest (LinuxGuest, 128 MiB) instead of
	// an empty machine: a root shell on the serial port about five seconds
	// after start, answering typed lines ending in "\n".
	Guest bool
	// Port is the chardev's port on 127.0.0.1; 0 picks a free one.
	Port int
}

// StartSerial starts a diskless PC whose first serial port is a TCP
// chardev (id "s0") listening on 127.0.0.1; SeaBIOS prints its banner
// there. It returns QEMU and the chardev's address.
func StartSerial(t testing.TB, o SerialOptions) (*QEMU, string) {
	t.Helper()
	port := o.Port
	if port == 0 {
		port = FreePort(t)
	}
	chardev := fmt.Sprintf("socket,id=s0,host=127.0.0.1,port=%d,server=on,wait=off", port)
	var args []string
	if o.TLSDir != "" {
		args = append(args, "-object", TLSObject(o.TLSDir, o.VerifyPeer))
		chardev += ",tls-creds=tls0"
	}
	if o.Guest {
		kernel, initrd := LinuxGuest(t)
		args = append(args, "-m", "128", "-kernel", kernel, "-initrd", initrd, "-append", GuestCmdline)
	}
	args = append(args, "-machine", "pc,graphics=off", "-chardev", chardev)
	if o.Monitor {
		args = append(args, "-mon", "chardev=s0,mode=readline")
	} else {
		args = append(args, "-serial", "chardev:s0")
	}
	if o.Paused {
		args = append(args, "-S")
	}
	return Start(t, args...), "127.0.0.1:" + strconv.Itoa(port)
}

// VNCOptions configures StartVNC.
type VNCOptions struct {
	// TLSDir, if set, turns on VeNCrypt x509 with the credentials there.
	TLSDir string
	// VerifyPeer makes QEMU require a client certificate.
	VerifyPeer bool
	// Password, if set, turns on VNC password authentication (VeNCrypt
	// subtype X509Vnc with TLS, plain VNC auth without).
	Password string
	// Args are more QEMU arguments (GraphicsGuest.Args boots the tiny
	// Linux guest).
	Args []string
}

// StartVNC starts a diskless q35 machine with a standard VGA framebuffer
// (720x400 text mode) and a VNC server on 127.0.0.1. It returns QEMU and
// the VNC server's address.
func StartVNC(t testing.TB, o VNCOptions) (*QEMU, string) {
	t.Helper()
	var port int
	for port = FreePort(t); port < 5900; port = FreePort(t) {
		// -vnc takes a display number: port 5900+N.
	}
	vnc := fmt.Sprintf("127.0.0.1:%d", port-5900)
	var args []string
	if o.TLSDir != "" {
		args = append(args, "-object", TLSObject(o.TLSDir, o.VerifyPeer))
		vnc += ",tls-creds=tls0"
	}
	if o.Password != "" {
		vnc += ",password=on"
	}
	args = append(args, "-machine", "q35", "-vga", "std", "-vnc", vnc)
	q := Start(t, append(args, o.Args...)...)
	if o.Password != "" {
		if _, err := q.QMP("change-vnc-password", map[string]any{"password": o.Password}); err != nil {
			t.Fatal(err)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	q.waitListening(addr)
	return q, addr
}

// waitListening waits until QEMU accepts TCP connections at addr. QMP can
// answer before the display servers listen (seen once in CI: the first
// VNC connection refused right after Start); a bare connect and close is
// harmless to VNC and SPICE.
func (q *QEMU) waitListening(addr string) {
	q.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := WaitDial(ctx, addr); err != nil {
		q.t.Fatalf("QEMU: %v; its output: %s", err, q.Output())
	}
}

// WaitDial polls until address accepts a TCP connection (then closes it)
// or the context ends. Do not use it on a serial chardev: QEMU would take
// the probe as its one client.
func WaitDial(ctx context.Context, address string) error {
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", address)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting connections: %w", address, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Buffer collects a process's output: safe for a writer and concurrent
// readers (tests poll String while the process runs).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
