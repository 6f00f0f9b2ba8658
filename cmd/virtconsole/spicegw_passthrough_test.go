package main

// End-to-end test of the passthrough SPICE CONNECT gateway ("server proxy
// --spice-connect-listen --spice-connect-passthrough") with the real
// remote-viewer under Xvfb: the tunnels carry QEMU's own TLS.

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// gatewayFrom opens a TLS connection to the gateway gw from the loopback
// address local, trusting the CA in the PEM file ca.
func gatewayFrom(t *testing.T, gw, local, ca string) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	raw, err := d.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: caPool(t, ca), ServerName: "127.0.0.1"})
	t.Cleanup(func() { c.Close() })
	return c
}

// caPool is a pool of the certificates in the PEM file ca.
func caPool(t *testing.T, ca string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return pool
}

// TestSPICEGatewayPassthrough: QEMU's SPICE TLS certificate comes from a
// CA of its own, the proxy's from another. "vv" refuses a passthrough
// gateway without --passthrough; with it, the file carries QEMU's CA
// (not the proxy's), QEMU's certificate subject and the SPICE password.
// remote-viewer opens it through the gateway: every channel (main,
// display, inputs, cursor, TLS at QEMU) is relayed, logged under the one
// grant, with no TLS terminated by the proxy. While the grant lasts, a
// CONNECT with the same credential from the same address reaches QEMU's
// own TLS; from another address (127.0.0.2) it is 407. After the grant
// (shortened to 12 s) even the same address is 407, while the viewer's
// session goes on: the keys it types reach the guest's shell.
func TestSPICEGatewayPassthrough(t *testing.T) {
	bins := qemutest.Need(t, "xvfb-run", "remote-viewer", "xdotool", "unshare")
	rv, xdotool := bins[1], bins[2]
	start := time.Now()
	g := qemutest.NewGraphicsGuest(t)
	qemuDir, proxyDir := pki(t), pki(t)
	qemuCA, proxyCA := filepath.Join(qemuDir, "ca-cert.pem"), filepath.Join(proxyDir, "ca-cert.pem")
	const password = "passthrough-spice-password-1"
	q, _, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: qemuDir, Password: password, Args: g.Args})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU alive %v, output: %s", q.Alive(), q.Output())
		}
	})
	const token = "passthrough-token-1"
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "spice", Address: tlsAddr, Password: password}})
	// Long enough for remote-viewer's channels and the checks while the
	// grant lasts (under half a second of it measured here), short enough not to idle
	// the test: it waits the rest of the grant out.
	const ttl = 12 * time.Second
	p := startDaemon(t, append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", proxyDir, "--connect-tls-dir", qemuDir,
		"--tokens", tokens, "--single-use", "--spice-connect-passthrough", "--spice-connect-grant-ttl", ttl.String()}, gatewayFlags...)...)
	gw := gatewayAddr(t, p)
	// What passthrough cannot go without, or with.
	base := []string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", proxyDir, "--tokens", tokens, "--spice-connect-passthrough"}
	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{[]string{"--connect-tls-dir", qemuDir}, "--spice-connect-passthrough goes with --spice-connect-listen ADDR"},
		{append([]string{"--connect-insecure"}, gatewayFlags...), "--spice-connect-passthrough needs --connect-tls-dir DIR"},
		{append([]string{"--connect-tls-dir", qemuDir, "--spice-connect-tls-dir", proxyDir}, gatewayFlags...), "--spice-connect-tls-dir is not used with --spice-connect-passthrough"},
	} {
		r := run(t, nil, append(base, tc.extra...)...)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1", tc.extra, r.code)
		}
		checkOneLine(t, r.stderr, tc.want)
	}
	vvArgs := []string{"vv", "--token-file", writeToken(t, token), "--gateway", "https://" + gw, "--ca-file", proxyCA}

	r := run(t, nil, vvArgs...)
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("vv without --passthrough at a passthrough gateway: exit %d, stdout %q", r.code, r.stdout)
	}
	checkOneLine(t, r.stderr, "pass --passthrough to write one")
	out := filepath.Join(t.TempDir(), "console.vv")
	if r := run(t, nil, append(vvArgs, "--passthrough", "-o", out)...); r.code != 0 {
		t.Fatalf("vv --passthrough: exit %d: %s", r.code, r.stderr)
	}
	raw, _ := os.ReadFile(out)
	text := string(raw)
	for k, v := range map[string]string{"host": proxy.ConnectHost, "tls-port": "5901", "password": password,
		"host-subject": "O=virtconsole, CN=127.0.0.1", "secure-channels": "all"} {
		if got := vvValue(text, k); got != v {
			t.Errorf(".vv %s=%q, want %q", k, got, v)
		}
	}
	caPEM, _ := os.ReadFile(qemuCA)
	if got := strings.ReplaceAll(vvValue(text, "ca"), `\n`, "\n"); got != string(caPEM) {
		t.Errorf(".vv ca is not QEMU's CA:\n%s", got)
	}
	if q.Alive() && len(qemuChannels(t, q)) != 0 {
		t.Fatal("vv left a channel open at QEMU")
	}

	serial := g.Boot(t, q)
	x := viewerThroughGateway(t, rv, proxyCA, vvCopy(t, text), "")
	var firstSeen time.Time // the first channel is relayed by then: the grant ends before firstSeen+ttl
	waitFor(t, 60*time.Second, "remote-viewer's main, display, inputs and cursor channels at QEMU", func() bool {
		select {
		case <-x.done:
			t.Fatalf("remote-viewer exited: %s", x.out.String())
		default:
		}
		if firstSeen.IsZero() && strings.Contains(p.log.String(), `msg="session start"`) {
			firstSeen = time.Now()
		}
		types := map[int]bool{}
		for _, c := range qemuChannels(t, q) {
			types[c.ChannelType] = c.TLS
		}
		return types[1] && types[2] && types[3] && types[4] // SPICE channel types: main, display, inputs, cursor
	})
	t.Logf("remote-viewer's channels relayed after %v", time.Since(start).Round(time.Millisecond))
	log := p.log.String()
	starts := logLines(log, "session start")
	for _, l := range starts {
		if l.session != starts[0].session || !strings.HasPrefix(l.session, "relay-") || l.console != tlsAddr {
			t.Errorf("relayed tunnel of session %q to %s; want every one under one grant to %s:\n%s", l.session, l.console, tlsAddr, log)
		}
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="session start"`) && (!strings.Contains(l, "via=connect") || !strings.Contains(l, "auth=passthrough")) {
			t.Errorf("a session that was not relayed by the gateway: %s", l)
		}
	}
	if len(starts) < 4 {
		t.Errorf("%d relayed tunnels, want at least main, display, inputs and cursor", len(starts))
	}

	// While the grant lasts: the same address reaches QEMU's own TLS; another is refused.
	right := basic(proxy.EncodeConnectToken(token))
	if resp, _ := connectReply(t, gatewayFrom(t, gw, "127.0.0.2", proxyCA), proxy.ConnectTarget, right); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("CONNECT with the granted token from another address: %s, want 407", resp.Status)
	}
	c := gatewayFrom(t, gw, "127.0.0.1", proxyCA)
	resp, _ := connectReply(t, c, proxy.ConnectTarget, right)
	if since := time.Since(firstSeen); since >= ttl {
		t.Fatalf("the viewer took %v to open its channels, past the %v grant: the checks below cannot run", since, ttl)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT with the granted token from its address: %s, want 200", resp.Status)
	}
	inner := tls.Client(c, &tls.Config{RootCAs: caPool(t, qemuCA), ServerName: "127.0.0.1"})
	if err := inner.Handshake(); err != nil {
		t.Fatalf("TLS with QEMU through the relay (QEMU's CA): %v", err)
	}
	inner.Close()
	t.Logf("the checks while the grant lasts done %v into its %v", time.Since(firstSeen).Round(time.Millisecond), ttl)

	screenshot(t, x.displayFile)
	xdo := xdotoolOn(t, xdotool, x)
	win := viewerWindow(t, x, xdo, func() bool { return true })

	// After the grant: refused even from its address; the session goes on.
	time.Sleep(time.Until(firstSeen.Add(ttl + time.Second)))
	if resp, _ := connectReply(t, gatewayFrom(t, gw, "127.0.0.1", proxyCA), proxy.ConnectTarget, right); resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("CONNECT with the token after its grant: %s, want 407", resp.Status)
	}
	xdoTypeIntoGuest(t, serial, xdo, win)
	stopViewer(t, x)
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}
