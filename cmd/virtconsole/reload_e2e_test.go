package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// TestReloadRotatesCertificates: a live VNC session through the proxy
// (real QEMU, VeNCrypt x509 with client certificates) keeps running
// across a SIGHUP that swaps the listener's and the QEMU-side
// certificates; afterwards the listener serves the new certificate (its
// serial) and new sessions present the new client certificate to the
// console (a TLS chardev stand-in that records it). A reload with a
// broken key keeps the previous certificate, ends nothing and sets the
// metric; a renewal written with no signal is picked up by the proxy's
// polling; a changed config file setting that applies only at start is
// named in a warning.
func TestReloadRotatesCertificates(t *testing.T) {
	// Mostly a wait for the daemons' certificate polling (every 10 s): in
	// parallel with TestUnitExecStart, which waits for it too. Its own
	// directories, processes and ports (127.0.0.1:0); no global state.
	t.Parallel()
	qemutest.Require(t)
	a, b, c := pki(t), pki(t), pki(t)
	bundle := concatFiles(t, filepath.Join(a, "ca-cert.pem"), filepath.Join(b, "ca-cert.pem"), filepath.Join(c, "ca-cert.pem"))
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		t.Fatal("CA bundle")
	}

	// The directories the proxy and QEMU read: A's certificates at first,
	// under a CA bundle that also holds B's and C's CAs.
	listen, connectDir, qemuDir := t.TempDir(), t.TempDir(), t.TempDir()
	for _, dir := range []string{listen, connectDir, qemuDir} {
		writeFile0600(t, filepath.Join(dir, "ca-cert.pem"), bundle)
	}
	install := func(from, to string, role tlscreds.Role) {
		t.Helper()
		for _, f := range []string{role.CertFile(), role.KeyFile()} {
			data, err := os.ReadFile(filepath.Join(from, f))
			if err != nil {
				t.Fatal(err)
			}
			// As a renewal tool does: a new file renamed into place.
			tmp := filepath.Join(to, "."+f)
			writeFile0600(t, tmp, data)
			if err := os.Rename(tmp, filepath.Join(to, f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	install(a, listen, tlscreds.RoleServer)
	install(a, connectDir, tlscreds.RoleClient)
	install(a, qemuDir, tlscreds.RoleServer)
	serial := func(dir string, role tlscreds.Role) *big.Int {
		t.Helper()
		creds, err := tlscreds.Load(dir, role)
		if err != nil {
			t.Fatal(err)
		}
		return creds.Cert.Leaf.SerialNumber
	}

	_, vncAddr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: qemuDir, VerifyPeer: true})
	console := startRecordingConsole(t, qemuDir, roots)
	tokens := writeTokens(t, map[string]resolver.Console{
		"reload-vnc":    {Type: "vnc", Address: vncAddr},
		"reload-serial": {Type: "serial", Address: console.addr},
	})
	config := filepath.Join(t.TempDir(), "server.toml")
	writeFile0600(t, config, []byte("[proxy]\nmax-sessions = 100\n"))
	p := startDaemon(t, "server", "proxy", "--config", config, "--listen", "127.0.0.1:0", "--tls-dir", listen,
		"--connect-tls-dir", connectDir, "--tokens", tokens, "--metrics-listen", "127.0.0.1:0")
	maddr := metricsAddr(t, p)
	clientCfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}

	served := func() *big.Int {
		t.Helper()
		conn, err := tls.Dial("tcp", p.addr, clientCfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber
	}
	open := func(token string) net.Conn {
		t.Helper()
		h := http.Header{}
		h.Set("Authorization", "Bearer "+token)
		conn, err := wsconn.Dial(t.Context(), "wss://"+p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: clientCfg})
		if err != nil {
			t.Fatal(err)
		}
		return conn
	}
	// A serial session's first byte reaches the console, which records
	// the client certificate the proxy presented.
	serialSession := func() *big.Int {
		t.Helper()
		conn := open("reload-serial")
		defer conn.Close()
		if _, err := conn.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return console.last()
	}
	hup := func(want string) {
		t.Helper()
		before := strings.Count(p.log.String(), want)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the log line "+want, func() bool { return strings.Count(p.log.String(), want) > before })
	}

	if got, want := served(), serial(a, tlscreds.RoleServer); got.Cmp(want) != 0 {
		t.Fatalf("served certificate serial %v, want A's %v", got, want)
	}
	if got, want := serialSession(), serial(a, tlscreds.RoleClient); got.Cmp(want) != 0 {
		t.Fatalf("client certificate toward the console %v, want A's %v", got, want)
	}
	vnc := open("reload-vnc")
	defer vnc.Close()
	if name, _, _, reason := rfbHandshake(t, vnc); name != "QEMU" {
		t.Fatalf("ServerInit %q, reason %q", name, reason)
	}

	// B's certificates and a SIGHUP.
	install(b, listen, tlscreds.RoleServer)
	install(b, connectDir, tlscreds.RoleClient)
	hup(`msg=reloaded`)
	framebufferUpdate(t, vnc) // the live session goes on
	if got, want := served(), serial(b, tlscreds.RoleServer); got.Cmp(want) != 0 {
		t.Fatalf("after SIGHUP: served certificate serial %v, want B's %v", got, want)
	}
	if got, want := serialSession(), serial(b, tlscreds.RoleClient); got.Cmp(want) != 0 {
		t.Fatalf("after SIGHUP: client certificate toward the console %v, want B's %v", got, want)
	}
	if v := scrape(t, maddr).value(t, "virtconsole_reloads_total", "result", "ok"); v < 1 {
		t.Fatalf("reloads_total{result=ok} %v", v)
	}

	// A broken key: the reload fails in one line, B's certificate stays,
	// the session and the process go on.
	key := filepath.Join(listen, tlscreds.RoleServer.KeyFile())
	writeFile0600(t, key, []byte("not a key\n"))
	hup(`msg="reload failed`)
	if got, want := served(), serial(b, tlscreds.RoleServer); got.Cmp(want) != 0 {
		t.Fatalf("after a broken reload: served serial %v, want B's %v still", got, want)
	}
	framebufferUpdate(t, vnc)
	m := scrape(t, maddr)
	if m.value(t, "virtconsole_last_reload_successful") != 0 || m.value(t, "virtconsole_reloads_total", "result", "failed") < 1 {
		t.Fatal("the failed reload is not in the metrics")
	}
	select {
	case <-p.done:
		t.Fatalf("the proxy exited on a broken reload: %s", p.log.String())
	default:
	}

	// C's certificate, written with no signal: the proxy's polling
	// (every 10 s) picks it up.
	install(c, listen, tlscreds.RoleServer)
	waitFor(t, 30*time.Second, "C's certificate, served without a SIGHUP", func() bool {
		return served().Cmp(serial(c, tlscreds.RoleServer)) == 0
	})
	framebufferUpdate(t, vnc)

	// A config file setting that applies only at start: named.
	writeFile0600(t, config, []byte("[proxy]\nmax-sessions = 200\n"))
	hup(`restart the daemon to apply them`)
	if !strings.Contains(p.log.String(), `keys=max-sessions`) {
		t.Fatalf("the warning does not name max-sessions:\n%s", p.log.String())
	}
	// A config file that no longer parses: nothing is reloaded.
	writeFile0600(t, config, []byte("[proxy]\nmax-sessions = \n"))
	hup(`msg="reload failed`)
	if !strings.Contains(p.log.String(), config+":2") {
		t.Fatalf("the failure does not name the file and line:\n%s", p.log.String())
	}
	framebufferUpdate(t, vnc)
}

// recordingConsole is a TLS chardev stand-in that requires client
// certificates and records the serial of each one presented.
type recordingConsole struct {
	addr    string
	mu      sync.Mutex
	serials []*big.Int
}

func (c *recordingConsole) last() *big.Int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.serials) == 0 {
		return big.NewInt(-1)
	}
	return c.serials[len(c.serials)-1]
}

func startRecordingConsole(t *testing.T, dir string, roots *x509.CertPool) *recordingConsole {
	creds, err := tlscreds.Load(dir, tlscreds.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := creds.ServerConfig(tlscreds.DefaultPolicy(), true)
	cfg.ClientCAs = roots
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &recordingConsole{addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				conn := tls.Server(raw, cfg)
				defer conn.Close()
				if err := conn.Handshake(); err != nil {
					return
				}
				rc.mu.Lock()
				rc.serials = append(rc.serials, conn.ConnectionState().PeerCertificates[0].SerialNumber)
				rc.mu.Unlock()
				nettest.Echo(conn)
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return rc
}

// framebufferUpdate asks the live RFB session for a full update of a
// 16x16 corner and reads the answer: FramebufferUpdate with raw
// rectangles (no SetEncodings was sent) of QEMU's default 32 bits a
// pixel.
func framebufferUpdate(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte{3, 0, 0, 0, 0, 0, 0, 16, 0, 16}); err != nil {
		t.Fatalf("the live VNC session: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	hdr := make([]byte, 4)
	if err := readFull(c, hdr); err != nil || hdr[0] != 0 {
		t.Fatalf("the live VNC session: message %v, %v", hdr, err)
	}
	for range binary.BigEndian.Uint16(hdr[2:]) {
		rect := make([]byte, 12)
		if err := readFull(c, rect); err != nil {
			t.Fatalf("the live VNC session: rectangle: %v", err)
		}
		w, h, enc := binary.BigEndian.Uint16(rect[4:]), binary.BigEndian.Uint16(rect[6:]), binary.BigEndian.Uint32(rect[8:])
		if enc != 0 {
			t.Fatalf("the live VNC session: encoding %d, want raw", enc)
		}
		if err := readFull(c, make([]byte, int(w)*int(h)*4)); err != nil {
			t.Fatalf("the live VNC session: pixels: %v", err)
		}
	}
}

func concatFiles(t *testing.T, paths ...string) []byte {
	t.Helper()
	var out []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

func writeFile0600(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
