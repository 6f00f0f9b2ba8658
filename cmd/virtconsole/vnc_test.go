package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// localGraphics is a running "virtconsole vnc" or "virtconsole spice" and
// the port it listens on.
type localGraphics struct {
	*client
	port int
}

// startVNC runs "virtconsole vnc ... --local-port 0 --json".
func startVNC(t *testing.T, args ...string) *localGraphics {
	t.Helper()
	return startGraphics(t, "vnc", args...)
}

// startGraphics runs "virtconsole SUBCOMMAND ... --local-port 0 --json"
// (vnc, spice) and reads the port it announces.
func startGraphics(t *testing.T, subcommand string, args ...string) *localGraphics {
	t.Helper()
	c := newClient(vcBinary, append([]string{subcommand, "--local-port", "0", "--json"}, args...)...)
	c.cmd.Stdout = nil
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.done = launch(t, c.cmd, c.errb.String)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the announced address: %v; stderr: %s", err, c.errb.String())
	}
	var a struct {
		Address string `json:"address"`
		Port    int    `json:"port"`
	}
	if err := json.Unmarshal([]byte(line), &a); err != nil || a.Address != "127.0.0.1" || a.Port == 0 {
		t.Fatalf("announced %q: %v", line, err)
	}
	go io.Copy(c.out, stdout)
	return &localGraphics{client: c, port: a.Port}
}

// snapshot runs the real vncsnapshot client against the local port until
// it saves a 720x400 image (QEMU's ServerInit says 640x480 until the VGA
// BIOS has switched to text mode), and returns the image. opts are
// vncsnapshot's options; none means -quality 90.
func snapshot(t *testing.T, port int, opts ...string) image.Image {
	t.Helper()
	bin := qemutest.Need(t, "vncsnapshot")[0]
	out := filepath.Join(t.TempDir(), "shot.jpg")
	if len(opts) == 0 {
		opts = []string{"-quality", "90"}
	}
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		os.Remove(out)
		cmd := exec.Command(bin, append(opts, fmt.Sprintf("127.0.0.1::%d", port), out)...)
		b, err := cmd.CombinedOutput()
		last = string(b)
		if err == nil {
			f, ferr := os.Open(out)
			if ferr == nil {
				img, derr := jpeg.Decode(f)
				f.Close()
				if derr == nil && img.Bounds().Dx() == 720 && img.Bounds().Dy() == 400 {
					return img
				}
				if derr == nil {
					last = fmt.Sprintf("image is %v", img.Bounds())
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("vncsnapshot did not save a 720x400 image: %s", last)
	return nil
}

// rfbViewer is a scripted RFB 3.8 viewer at the local port: it reaches
// ServerInit or returns the server's failure reason.
func rfbViewer(t *testing.T, port int) (name string, width, height int, reason string, conn net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	name, width, height, reason = rfbHandshake(t, c)
	return name, width, height, reason, c
}

// rfbHandshake runs a viewer's side of RFB 3.8 on c, offering nothing but
// None, up to ServerInit; a failure ends the test.
func rfbHandshake(t testing.TB, c net.Conn) (name string, width, height int, reason string) {
	t.Helper()
	name, width, height, reason, err := rfbInit(c)
	if err != nil {
		t.Fatal(err)
	}
	return name, width, height, reason
}

// rfbInit is rfbHandshake returning its failure: reason is QEMU's when it
// refused the handshake.
func rfbInit(c net.Conn) (name string, width, height int, reason string, err error) {
	return rfbInitShared(c, true)
}

// rfbInitShared is rfbInit whose ClientInit asks for a shared session, or
// for exclusive access (RFC 6143 §7.3.1).
func rfbInitShared(c net.Conn, shared bool) (name string, width, height int, reason string, err error) {
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	ver := make([]byte, 12)
	if err := readFull(c, ver); err != nil {
		return "", 0, 0, "", fmt.Errorf("read the server's version: %w", err)
	}
	if string(ver) != "RFB 003.008\n" {
		return "", 0, 0, "", fmt.Errorf("server version %q", ver)
	}
	c.Write([]byte("RFB 003.008\n"))
	n := make([]byte, 1)
	if err := readFull(c, n); err != nil {
		return "", 0, 0, "", fmt.Errorf("read the security types: %w", err)
	}
	if n[0] == 0 {
		reason, err := rfbReason(c)
		return "", 0, 0, reason, err
	}
	types := make([]byte, n[0])
	if err := readFull(c, types); err != nil {
		return "", 0, 0, "", fmt.Errorf("read the security types: %w", err)
	}
	if string(types) != "\x01" {
		return "", 0, 0, "", fmt.Errorf("security types offered to the viewer: %v, want only None", types)
	}
	c.Write([]byte{1})
	res := make([]byte, 4)
	if err := readFull(c, res); err != nil {
		return "", 0, 0, "", fmt.Errorf("read the security result: %w", err)
	}
	if binary.BigEndian.Uint32(res) != 0 {
		reason, err := rfbReason(c)
		return "", 0, 0, reason, err
	}
	flag := byte(0)
	if shared {
		flag = 1
	}
	c.Write([]byte{flag}) // ClientInit
	init := make([]byte, 24)
	if err := readFull(c, init); err != nil {
		return "", 0, 0, "", fmt.Errorf("read ServerInit: %w", err)
	}
	nameLen := binary.BigEndian.Uint32(init[20:])
	if nameLen > 4096 {
		return "", 0, 0, "", fmt.Errorf("desktop name length %d", nameLen)
	}
	nb := make([]byte, nameLen)
	if err := readFull(c, nb); err != nil {
		return "", 0, 0, "", fmt.Errorf("read the desktop name: %w", err)
	}
	return string(nb), int(binary.BigEndian.Uint16(init[0:])), int(binary.BigEndian.Uint16(init[2:])), "", nil
}

func readReason(t testing.TB, c net.Conn) string {
	t.Helper()
	reason, err := rfbReason(c)
	if err != nil {
		t.Fatal(err)
	}
	return reason
}

// rfbReason reads an RFB failure reason.
func rfbReason(c net.Conn) (string, error) {
	l := make([]byte, 4)
	if err := readFull(c, l); err != nil {
		return "", fmt.Errorf("read the failure reason: %w", err)
	}
	n := binary.BigEndian.Uint32(l)
	if n > 4096 {
		return "", fmt.Errorf("reason length %d", n)
	}
	b := make([]byte, n)
	if err := readFull(c, b); err != nil {
		return "", fmt.Errorf("read the failure reason: %w", err)
	}
	return string(b), nil
}

func readFull(c net.Conn, b []byte) error { _, err := io.ReadFull(c, b); return err }

// TestVNCThroughProxy: QEMU with VeNCrypt x509 and client certificates
// (subtype 260) and with a VNC password (261); through the proxy and
// "virtconsole vnc --local-port", and in direct mode, the real vncsnapshot
// client saves a 720x400 image.
func TestVNCThroughProxy(t *testing.T) {
	qemutest.Require(t)
	qemutest.Need(t, "vncsnapshot")
	for _, tc := range []struct {
		name     string
		password string
		auth     string
	}{{"x509none", "", "vencrypt-x509none"}, {"x509vnc", "vnc-pass-1", "vencrypt-x509vnc"}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pki(t)
			_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true, Password: tc.password})
			tokens := writeTokens(t, map[string]resolver.Console{"vnc-tok": {Type: "vnc", Address: addr, Password: tc.password}})
			p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)

			t.Run("proxy", func(t *testing.T) {
				v := startVNC(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "vnc-tok"))
				snapshot(t, v.port)
				waitFor(t, 10*time.Second, "the session log line", func() bool {
					return strings.Contains(p.log.String(), "auth="+tc.auth)
				})
			})
			t.Run("direct", func(t *testing.T) {
				args := []string{"--target", addr, "--connect-tls-dir", dir}
				if tc.password != "" {
					pw := filepath.Join(t.TempDir(), "pw")
					os.WriteFile(pw, []byte(tc.password+"\n"), 0o600)
					args = append(args, "--password-file", pw)
				}
				v := startVNC(t, args...)
				snapshot(t, v.port)
			})
		})
	}
}

// TestVNCWrongPassword: the viewer gets a failure with QEMU's reason, the
// proxy logs it, and a session with the right password still works.
func TestVNCWrongPassword(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true, Password: "right-pass"})
	tokens := writeTokens(t, map[string]resolver.Console{
		"wrong": {Type: "vnc", Address: addr, Password: "wrong-pass"},
		"right": {Type: "vnc", Address: addr, Password: "right-pass"},
	})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	ca := filepath.Join(dir, "ca-cert.pem")
	bad := startVNC(t, "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, "wrong"))
	good := startVNC(t, "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, "right"))

	_, _, _, reason, _ := rfbViewer(t, bad.port)
	if !strings.Contains(reason, "Authentication failed") {
		t.Fatalf("viewer got reason %q, want QEMU's 'Authentication failed'", reason)
	}
	waitFor(t, 10*time.Second, "the proxy's log of the refusal", func() bool {
		return strings.Contains(p.log.String(), "Authentication failed")
	})
	name, w, h, reason, _ := rfbViewer(t, good.port)
	if reason != "" || name != "QEMU" || w == 0 || h == 0 {
		t.Fatalf("good session: name %q %dx%d reason %q", name, w, h, reason)
	}
	if strings.Contains(p.log.String(), "right-pass") || strings.Contains(p.log.String(), "wrong-pass") {
		t.Fatal("the proxy logged a VNC password")
	}
}

// TestVNCTwoViewers: two viewers connected through one --local-port at
// the same time both reach ServerInit and stay connected.
func TestVNCTwoViewers(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(t, map[string]resolver.Console{"two": {Type: "vnc", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	v := startVNC(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "two"))

	var wg sync.WaitGroup
	conns := make([]net.Conn, 2)
	names := make([]string, 2)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names[i], _, _, _, conns[i] = rfbViewer(t, v.port)
		}()
	}
	wg.Wait()
	for i, c := range conns {
		if names[i] != "QEMU" {
			t.Fatalf("viewer %d: desktop name %q", i, names[i])
		}
		// Still alive: a FramebufferUpdateRequest gets an answer.
		c.Write([]byte{3, 0, 0, 0, 0, 0, 0, 16, 0, 16})
		b := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("viewer %d: no framebuffer update: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, "two session start lines", func() bool {
		return strings.Count(p.log.String(), "session start") >= 2
	})
}

// TestVNCViewerCommand: --viewer starts the given viewer (here the real
// vncsnapshot) at the local port, and the command exits when it does.
func TestVNCViewerCommand(t *testing.T) {
	qemutest.Require(t)
	qemutest.Need(t, "vncsnapshot")
	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(t, map[string]resolver.Console{"view": {Type: "vnc", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	shot := filepath.Join(t.TempDir(), "viewer.jpg")
	r := run(t, nil, "vnc", "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"),
		"--token-file", writeToken(t, "view"), "--viewer", "vncsnapshot -quality 90 {host}::{port} "+shot)
	if r.code != 0 {
		t.Fatalf("exit code %d; stderr: %s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "listening on 127.0.0.1:") {
		t.Fatalf("stdout %q", r.stdout)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("the viewer saved nothing: %v", err)
	}
	defer f.Close()
	if _, err := jpeg.Decode(f); err != nil {
		t.Fatalf("viewer's image: %v", err)
	}
}

// TestVNCLocalRefusals: bad local listener flags are usage errors.
func TestVNCLocalRefusals(t *testing.T) {
	r := run(t, nil, "vnc", "--target", "127.0.0.1:5900", "--connect-insecure", "--listen-address", "0.0.0.0")
	if r.code != 1 || !strings.Contains(r.stderr, "--allow-remote") {
		t.Fatalf("non-loopback listen: code %d stderr %q", r.code, r.stderr)
	}
	r = run(t, nil, "vnc", "--target", "127.0.0.1:5900")
	if r.code != 1 || !strings.Contains(r.stderr, "--connect-tls-dir") {
		t.Fatalf("direct mode without TLS: code %d stderr %q", r.code, r.stderr)
	}
	r = run(t, nil, "vnc", "--target", "127.0.0.1:5900", "--proxy", "wss://x:1", "--connect-insecure")
	if r.code != 1 {
		t.Fatalf("--proxy with --target: code %d stderr %q", r.code, r.stderr)
	}
}

// TestVNCViewerAuto is the user's story of the VNC issue: with a display,
// "virtconsole vnc --local-port 0 --viewer auto" starts remote-viewer on
// its local port, the guest shows up in it (through the proxy, VeNCrypt
// x509 toward QEMU), and the command exits when the viewer is closed.
func TestVNCViewerAuto(t *testing.T) {
	qemutest.Require(t)
	qemutest.Need(t, "xvfb-run", "remote-viewer")
	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(t, map[string]resolver.Console{"auto": {Type: "vnc", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	x := startXvfb(t, vcBinary, "vnc", "--local-port", "0", "--viewer", "auto", "--proxy", "wss://"+p.addr,
		"--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "auto"))
	waitFor(t, 60*time.Second, "remote-viewer's session through the proxy", func() bool {
		select {
		case <-x.done:
			t.Fatalf("virtconsole vnc exited: %s", x.out.String())
		default:
		}
		return strings.Contains(p.log.String(), "auth=vencrypt-x509none")
	})
	screenshot(t, x.displayFile)

	// Close the viewer: virtconsole, its parent, must exit by itself.
	pid, _, _ := xvfbDisplay(x.displayFile)
	// Go starts processes from any of its threads: look at every task.
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	viewers := 0
	for _, task := range tasks {
		children, _ := os.ReadFile(task)
		for _, c := range strings.Fields(string(children)) {
			comm, _ := os.ReadFile("/proc/" + c + "/comm")
			if strings.TrimSpace(string(comm)) == "remote-viewer" {
				v, _ := strconv.Atoi(c)
				syscall.Kill(v, syscall.SIGTERM)
				viewers++
			}
		}
	}
	if viewers != 1 {
		t.Fatalf("virtconsole (pid %d) runs %d remote-viewers, want 1", pid, viewers)
	}
	select {
	case <-x.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("virtconsole vnc did not exit after its viewer closed: %s", x.out.String())
	}
	if code := x.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d: %s", code, x.out.String())
	}
}
