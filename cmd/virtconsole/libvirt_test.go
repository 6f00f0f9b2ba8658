package main

// End-to-end tests against a real libvirtd (TCG domains): the admin
// commands, the libvirt-backed daemons, and the client commands taking a
// DOMAIN.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// typeUntil types line into the console every second until the output
// contains want (the guest's shell may not be listening yet).
func typeUntil(t *testing.T, c *client, line, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(c.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the console output after typing %q: %q; stderr %q", want, line, c.out.String(), c.errb.String())
		}
		io.WriteString(c.stdin, line)
		waitForOr(time.Second, func() bool { return strings.Contains(c.out.String(), want) })
	}
}

// askGuest runs "virtconsole serial ARGS", types echo $((6*7)) ending
// with newline ("\r" on a pty, "\n" on a socket) until 42 comes back,
// then closes its input and wants exit 0.
func askGuest(t *testing.T, newline string, args ...string) {
	t.Helper()
	c := startSerial(t, args...)
	typeUntil(t, c, "echo $((6*7))"+newline, "42")
	c.stdin.Close()
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr %q", code, c.errb.String())
	}
}

// waitForOr polls cond for up to d and reports whether it held.
func waitForOr(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// TestLibvirtSerial: a small Linux guest with a shell on its pty serial
// console; "virtconsole serial DOMAIN" reaches it over libvirt's console
// stream directly, and through "virtconsole server" with the token read
// from libvirt, and types echo $((6*7)) to read 42.
func TestLibvirtSerial(t *testing.T) {
	d := libvirttest.Start(t)
	kernel, initrd := libvirttest.LinuxGuest(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{Kernel: kernel, Initrd: initrd, Cmdline: qemutest.GuestCmdline})

	t.Run("direct", func(t *testing.T) {
		askGuest(t, "\r", dom.Name)
	})

	// A script's pipe over the console stream: stdin ends at once. The
	// stream passes through libvirtd and a pty, whose first echo can take
	// over a second on a loaded machine: a longer drain, as the help says.
	t.Run("direct-pipe", func(t *testing.T) {
		pipeGuest(t, dom.Name, "--drain", "2s")
	})

	// The console stream over libvirt's TLS transport, as from another
	// machine: go-libvirt's stream framing over a remote connection.
	t.Run("direct-remote", func(t *testing.T) {
		askGuest(t, "\r", dom.Name, "-c", libvirttest.TLSURI)
	})
	t.Run("direct-remote-ssh", func(t *testing.T) {
		askGuest(t, "\r", dom.Name, "-c", d.StartSSH(t).URI)
	})

	t.Run("proxy", func(t *testing.T) {
		if r := run(t, nil, "enable", dom.Name, "--type", "serial"); r.code != 0 {
			t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
		}
		// No --connect-tls-dir: a pty console needs no credentials toward
		// QEMU, so the bundled server starts and says what it will refuse.
		dir := pki(t)
		p := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect", "qemu:///system")
		askGuest(t, "\r", dom.Name, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"))
		if !strings.Contains(p.log.String(), "kind=serial") {
			t.Fatalf("no serial session in the server log:\n%s", p.log.String())
		}
		// The same with a profile holding the proxy, its CA and the
		// libvirt URI: "serial DOMAIN" and nothing else (the file named
		// with --config, as the test's environment is fixed).
		cfg := filepath.Join(t.TempDir(), "config.toml")
		profile := "default-profile = \"lab\"\n[profiles.lab]\nproxy = \"wss://" + p.addr + "\"\nca-file = \"" +
			filepath.Join(dir, "ca-cert.pem") + "\"\nconnect = \"qemu:///system\"\n"
		if err := os.WriteFile(cfg, []byte(profile), 0o600); err != nil {
			t.Fatal(err)
		}
		askGuest(t, "\r", dom.Name, "--config", cfg)
		if n := strings.Count(p.log.String(), "session start"); n < 2 {
			t.Fatalf("%d sessions in the server log, want 2 (one with flags, one with the profile):\n%s", n, p.log.String())
		}
		if !strings.Contains(p.log.String(), "no --connect-tls-dir: serving only consoles that need no TLS toward QEMU") {
			t.Fatalf("the server did not say at startup which consoles it refuses:\n%s", p.log.String())
		}
	})
}

// TestLibvirtSerialTLS: the guest's shell on a TCP chardev with TLS
// (tls='yes', client certificates required, libvirttest's qemu.conf);
// "virtconsole serial DOMAIN" reaches it directly with the client
// certificates of --connect-tls-dir, and through "virtconsole server".
// Without --connect-tls-dir the direct client fails with one TLS line.
func TestLibvirtSerialTLS(t *testing.T) {
	d := libvirttest.Start(t)
	kernel, initrd := libvirttest.LinuxGuest(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{Kernel: kernel, Initrd: initrd, NoPTY: true, TCPSerial: true, TCPSerialTLS: true})

	t.Run("direct", func(t *testing.T) {
		askGuest(t, "\n", dom.Name, "--connect-tls-dir", libvirttest.TLSDir)
	})

	t.Run("direct-pipe", func(t *testing.T) {
		pipeGuest(t, dom.Name, "--connect-tls-dir", libvirttest.TLSDir)
	})

	// A scripted session straight to the TLS chardev (issue 13): the
	// shell's answer ends it with 0, a pattern that never comes with 8
	// within the timeout.
	t.Run("direct-expect", func(t *testing.T) {
		r := run(t, nil, "serial", dom.Name, "--connect-tls-dir", libvirttest.TLSDir, "--timeout", "60s",
			"--send", `\n`, "--expect", "# ", "--send", `echo $((6*7))\n`, "--expect", "42")
		if r.code != 0 || !strings.Contains(r.stdout, "\n42") {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		start := time.Now()
		r = run(t, nil, "serial", dom.Name, "--connect-tls-dir", libvirttest.TLSDir, "--timeout", "2s",
			"--send", `echo $((6*7))\n`, "--expect", "never-printed")
		if elapsed := time.Since(start); r.code != cmdutil.ExitTimeout || elapsed > 4*time.Second ||
			!strings.Contains(r.stderr, `waiting for --expect "never-printed"`) || !strings.Contains(r.stderr, "  | 42") {
			t.Fatalf("exit %d after %v, want %d within 2s + 2s; stderr %q", r.code, elapsed, cmdutil.ExitTimeout, r.stderr)
		}
	})

	t.Run("direct-without-client-cert", func(t *testing.T) {
		noClient := filepath.Join(t.TempDir(), "ca-only")
		if err := os.MkdirAll(noClient, 0o700); err != nil {
			t.Fatal(err)
		}
		ca, err := os.ReadFile(filepath.Join(libvirttest.TLSDir, "ca-cert.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noClient, "ca-cert.pem"), ca, 0o644); err != nil {
			t.Fatal(err)
		}
		r := run(t, nil, "serial", dom.Name, "--connect-tls-dir", noClient)
		if r.code != cmdutil.ExitTLS {
			t.Fatalf("without a client certificate: exit %d, want %d; stderr %q", r.code, cmdutil.ExitTLS, r.stderr)
		}
		checkOneLine(t, r.stderr, "requires a client certificate, and "+noClient+" has none; add client-cert.pem and client-key.pem")
	})

	t.Run("proxy", func(t *testing.T) {
		if r := run(t, nil, "enable", dom.Name, "--type", "serial"); r.code != 0 {
			t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
		}
		dir := pki(t)
		p := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir, "--connect", "qemu:///system")
		askGuest(t, "\n", dom.Name, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"))
		want := "console=127.0.0.1:" + strconv.Itoa(dom.TCPPort)
		if !strings.Contains(p.log.String(), want) || !strings.Contains(p.log.String(), "kind=serial") {
			t.Fatalf("no serial session with %s in the server log:\n%s", want, p.log.String())
		}
	})

	// serial DOMAIN --proxy --reconnect through the bundled server, whose
	// libvirt tokens are single-use: the server is killed and started
	// again on its port, and the client reconnects with a fresh token read
	// from libvirt (issue 13).
	t.Run("proxy-reconnect", func(t *testing.T) {
		if r := run(t, nil, "enable", dom.Name, "--type", "serial"); r.code != 0 {
			t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
		}
		dir := pki(t)
		args := []string{"server", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir, "--connect", "qemu:///system"}
		p := startDaemon(t, append(args, "--listen", "127.0.0.1:0")...)
		c := reconnectingSerial(t, p, args, []string{dom.Name, "--proxy", "wss://" + p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem")})
		waitFor(t, 60*time.Second, "the client's reconnected line", func() bool {
			return strings.Contains(c.errb.String(), "virtconsole: reconnected\n")
		})
		typeUntil(t, c, "echo after-$((6*7))\n", "after-42")
		c.stdin.Close()
		if code := c.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d; stderr %q", code, c.errb.String())
		}
	})

	// A server without QEMU-side credentials refuses this console, and
	// the client prints why.
	t.Run("proxy-without-connect-tls-dir", func(t *testing.T) {
		dir := pki(t)
		p := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect", "qemu:///system")
		r := run(t, nil, "serial", dom.Name, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"))
		if r.code != cmdutil.ExitUnreachable {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, cmdutil.ExitUnreachable, r.stderr)
		}
		checkOneLine(t, r.stderr, "needs TLS but the proxy has no client credentials; start it with --connect-tls-dir")
	})
}

// consolesJSON runs "consoles DOMAIN --json --show-tokens".
func consolesJSON(t *testing.T, domain string) []map[string]any {
	t.Helper()
	return consolesJSONAt(t, "", domain)
}

// consolesJSONAt is consolesJSON with the libvirt URI uri ("" for the
// default).
func consolesJSONAt(t *testing.T, uri, domain string) []map[string]any {
	t.Helper()
	r := runEnv(t, libvirtEnv(uri), nil, "consoles", domain, "--json", "--show-tokens")
	if r.code != 0 {
		t.Fatalf("consoles: exit %d: %s", r.code, r.stderr)
	}
	var out []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("consoles --json: %v: %q", err, r.stdout)
	}
	return out
}

func tokenOf(t *testing.T, domain, kind string) string {
	t.Helper()
	return tokenAt(t, "", domain, kind)
}

// tokenAt is tokenOf with the libvirt URI uri ("" for the default).
func tokenAt(t *testing.T, uri, domain, kind string) string {
	t.Helper()
	for _, c := range consolesJSONAt(t, uri, domain) {
		if c["type"] == kind && c["index"] == float64(0) {
			tok, _ := c["token"].(string)
			return tok
		}
	}
	t.Fatalf("no %s console in %s", kind, domain)
	return ""
}

// libvirtEnv is env() with LIBVIRT_DEFAULT_URI=uri unless uri is "".
func libvirtEnv(uri string) []string {
	if uri == "" {
		return env()
	}
	return env("LIBVIRT_DEFAULT_URI=" + uri)
}

// resolve asks the resolver daemon for token and returns the HTTP status
// and the decoded answer.
func resolve(t *testing.T, hc *http.Client, addr, token string) (int, map[string]any) {
	t.Helper()
	resp, err := hc.Get("https://" + addr + "/consoleresolver/token/" + token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestLibvirtAdminAndVNC: enable, the resolver daemon's answers per type,
// vncsnapshot through "virtconsole vnc DOMAIN" (proxy and direct), and
// screenshot, keys and type with DOMAIN; rotate and disable.
func TestLibvirtAdminAndVNC(t *testing.T) {
	d := libvirttest.Start(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true})
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")

	// libvirttest turns on vnc_tls with client certificates in qemu.conf,
	// as a hypervisor should: the default (secure) enable is the one to
	// prove.
	r := run(t, nil, "enable", dom.Name)
	if r.code != 0 || !strings.Contains(r.stdout, "vnc") {
		t.Fatalf("enable: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	vncTok, serialTok := tokenOf(t, dom.Name, "vnc"), tokenOf(t, dom.Name, "serial")
	if r := run(t, nil, "enable", dom.Name); r.code != 0 {
		t.Fatalf("second enable: exit %d: %s", r.code, r.stderr)
	}
	if tokenOf(t, dom.Name, "vnc") != vncTok {
		t.Fatal("enabling twice changed the token")
	}
	listing := run(t, nil, "consoles", dom.Name)
	if strings.Contains(listing.stdout, vncTok) {
		t.Fatal("consoles printed a token without --show-tokens")
	}

	// The resolver daemon reaches libvirtd over its TLS transport, as it
	// would a remote hypervisor's.
	res := startDaemon(t, "server", "resolver", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect", libvirttest.TLSURI)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, ca)}, Timeout: 10 * time.Second}
	status, body := resolve(t, hc, res.addr, vncTok)
	wantAddr := fmt.Sprintf("127.0.0.1:%d", dom.VNCPort(t))
	if status != 200 || body["type"] != "vnc" || body["address"] != wantAddr || body["insecure"] == true {
		t.Fatalf("vnc token: %d %v, want vnc at %s, secure", status, body, wantAddr)
	}
	if status, _ := resolve(t, hc, res.addr, serialTok); status != http.StatusNotImplemented {
		t.Fatalf("pty serial token through the REST resolver: %d, want 501", status)
	}
	if status, _ := resolve(t, hc, res.addr, "not-a-token"); status != 404 {
		t.Fatalf("unknown token: %d", status)
	}

	// TLS on both legs: wss to the proxy, VeNCrypt x509 with a client
	// certificate to libvirt's QEMU.
	srv := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir, "--connect", "qemu:///system")
	t.Run("vnc-proxy", func(t *testing.T) {
		v := startVNC(t, dom.Name, "--proxy", "wss://"+srv.addr, "--ca-file", ca)
		snapshot(t, v.port)
		waitFor(t, 10*time.Second, "the proxy's log of a VeNCrypt x509 session with QEMU", func() bool {
			return strings.Contains(srv.log.String(), "auth=vencrypt-x509")
		})
		// The scripting commands with DOMAIN through the proxy, the
		// token read from libvirt.
		screenshotCLI(t, filepath.Join(t.TempDir(), "shot.png"), dom.Name, "--proxy", "wss://"+srv.addr, "--ca-file", ca)
		if r := run(t, nil, "keys", dom.Name, "--proxy", "wss://"+srv.addr, "--ca-file", ca, "shift"); r.code != 0 {
			t.Errorf("keys DOMAIN through the proxy: exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("vnc-direct", func(t *testing.T) {
		v := startVNC(t, dom.Name, "--connect-tls-dir", libvirttest.TLSDir)
		snapshot(t, v.port)
		screenshotCLI(t, filepath.Join(t.TempDir(), "shot.png"), dom.Name, "--connect-tls-dir", libvirttest.TLSDir)
		if r := run(t, nil, "type", dom.Name, "--connect-tls-dir", libvirttest.TLSDir, "--text", " "); r.code != 0 {
			t.Errorf("type DOMAIN directly: exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("vnc-direct-remote", func(t *testing.T) {
		v := startVNC(t, dom.Name, "-c", libvirttest.TLSURI, "--connect-tls-dir", libvirttest.TLSDir)
		snapshot(t, v.port)
	})

	if r := run(t, nil, "rotate", dom.Name); r.code != 0 {
		t.Fatalf("rotate: exit %d: %s", r.code, r.stderr)
	}
	newTok := tokenOf(t, dom.Name, "vnc")
	if newTok == vncTok {
		t.Fatal("rotate kept the token")
	}
	if status, _ := resolve(t, hc, res.addr, vncTok); status != 404 {
		t.Fatalf("old token after rotate: %d, want 404", status)
	}
	if status, _ := resolve(t, hc, res.addr, newTok); status != 200 {
		t.Fatalf("new token after rotate: %d", status)
	}

	if r := run(t, nil, "disable", dom.Name); r.code != 0 {
		t.Fatalf("disable: exit %d: %s", r.code, r.stderr)
	}
	if status, _ := resolve(t, hc, res.addr, newTok); status != 404 {
		t.Fatalf("token after disable: %d, want 404", status)
	}
	for _, c := range consolesJSON(t, dom.Name) {
		if c["enabled"] == true || c["secret"] != nil {
			t.Fatalf("console still enabled after disable: %v", c)
		}
	}
	if out := d.Virsh(t, "secret-list"); strings.Contains(out, dom.UUID) {
		t.Fatalf("secrets naming the domain remain:\n%s", out)
	}
	if r := run(t, nil, "disable", dom.Name); r.code != 0 {
		t.Fatalf("second disable: exit %d: %s", r.code, r.stderr)
	}
}

// TestLibvirtAdminErrors: each failure is one clear line with its
// documented exit code.
func TestLibvirtAdminErrors(t *testing.T) {
	d := libvirttest.Start(t)
	bare := d.NewDomain(t, libvirttest.DomainOptions{NoPTY: true})
	plain := d.NewDomain(t, libvirttest.DomainOptions{})
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		match string
	}{
		{"no consoles", []string{"enable", bare.Name}, cmdutil.ExitNotFound, "no console"},
		{"unknown domain", []string{"enable", "no-such-domain-xyz"}, cmdutil.ExitNotFound, "no-such-domain-xyz"},
		{"unreachable URI", []string{"enable", "-c", "qemu+tcp://127.0.0.1:1/system", "x"}, cmdutil.ExitUnreachable, "127.0.0.1:1"},
		{"not enabled", []string{"serial", plain.Name, "--proxy", "wss://127.0.0.1:1"}, cmdutil.ExitNotFound, "enable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr %q", r.code, tc.code, r.stderr)
			}
			checkOneLine(t, r.stderr, tc.match)
		})
	}
}
