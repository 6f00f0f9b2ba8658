package main

// End-to-end tests of the SPICE CONNECT gateway ("server proxy
// --spice-connect-listen") and "virtconsole vv": the real remote-viewer
// under Xvfb opens a generated .vv file, with nothing of ours on the
// viewer's side, and reaches QEMU's SPICE TLS port through the gateway;
// scripted raw TCP/TLS clients check what the gateway refuses.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/protocols/spice/spicetest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

var gatewayListeningRE = regexp.MustCompile(`spice-connect listening" address=https://(\S+)`)

// gatewayFlags are the proxy flags of a SPICE CONNECT gateway on a free
// loopback port.
var gatewayFlags = []string{"--spice-connect-listen", "127.0.0.1:0"}

// gatewayAddr is the gateway's address in the proxy p's log.
func gatewayAddr(t *testing.T, p *daemon) string {
	t.Helper()
	return loggedAddr(t, p, gatewayListeningRE, "the SPICE CONNECT gateway's listening line")
}

// viewerThroughGateway starts remote-viewer (rv) under Xvfb with the .vv
// file vvFile. https:// SPICE proxies are checked against the system's
// trust store (glib-networking), so the viewer runs in a mount namespace
// of its own whose /etc/ssl/certs/ca-certificates.crt is ca, as on a
// machine that trusts the gateway's CA; nothing outside it changes.
// spiceProxyFile, if not "", holds a SPICE_PROXY value for the viewer (a
// file, so that the token is on no command line).
func viewerThroughGateway(t *testing.T, rv, ca, vvFile, spiceProxyFile string) *xvfbProc {
	t.Helper()
	const script = `mount --bind "$1" /etc/ssl/certs/ca-certificates.crt || exit 1
if [ -n "$3" ]; then SPICE_PROXY=$(cat "$3") && export SPICE_PROXY || exit 1; fi
exec "$4" "$2"`
	return startXvfb(t, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", ca, vvFile, spiceProxyFile, rv)
}

// stopViewer ends x's program (remote-viewer) and waits for it.
func stopViewer(t *testing.T, x *xvfbProc) {
	t.Helper()
	pid, _, _ := xvfbDisplay(x.displayFile)
	if pid <= 0 {
		t.Fatal("no viewer PID")
	}
	syscall.Kill(pid, syscall.SIGTERM)
	waitFor(t, 20*time.Second, "the viewer's exit", func() bool {
		select {
		case <-x.done:
			return true
		default:
			return false
		}
	})
}

// vvCopy writes the .vv text to a new file (remote-viewer deletes the
// file it opens: delete-this-file=1) and returns its path.
func vvCopy(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "console.vv")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// vvValue is the value of key in a .vv file's text.
func vvValue(text, key string) string {
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// TestSPICEGatewayRemoteViewer: "virtconsole vv --token-file" writes a
// .vv file (mode 0600, no VM password in it) for a single-use token of a
// console whose QEMU has a SPICE password; remote-viewer, under Xvfb,
// opens it and reaches the guest through the gateway: TLS to the gateway
// (https:// proxy, checked against the system trust store), TLS inside
// the tunnel (against the file's ca and host-subject), TLS from the
// proxy to QEMU. The proxy logs main, display, inputs and cursor under
// one session, each through the gateway; the screenshot shows the
// guest's text; xdotool's keys reach its shell. A second remote-viewer
// with the same file is refused while the first is live (QEMU keeps
// running, with the first session's channels only) and after it ends.
// Then a .vv file without proxy= and SPICE_PROXY in the environment opens
// a session with another token.
func TestSPICEGatewayRemoteViewer(t *testing.T) {
	bins := qemutest.Need(t, "xvfb-run", "remote-viewer", "xdotool", "unshare")
	rv, xdotool := bins[1], bins[2]
	start := time.Now()
	g := qemutest.NewGraphicsGuest(t)
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	const password = "gw-spice-password-1"
	q, _, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir, Password: password, Args: g.Args})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU alive %v, output: %s", q.Alive(), q.Output())
		}
	})
	const token, envToken = "gateway-token-1", "gateway-token-2"
	tokens := writeTokens(t, map[string]resolver.Console{
		token:    {Type: "spice", Address: tlsAddr, Password: password},
		envToken: {Type: "spice", Address: tlsAddr, Password: password},
	})
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	p := startDaemon(t, append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir,
		"--tokens", tokens, "--single-use", "--audit-log", auditPath}, gatewayFlags...)...)
	gw := gatewayAddr(t, p)

	out := filepath.Join(t.TempDir(), "console.vv")
	if r := run(t, nil, "vv", "--token-file", writeToken(t, token), "--gateway", "https://"+gw, "--ca-file", ca, "-o", out); r.code != 0 {
		t.Fatalf("vv: exit %d: %s", r.code, r.stderr)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf(".vv file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(out)
	text := string(raw)
	if strings.Contains(text, password) || strings.Contains(text, "password=") {
		t.Fatalf("the .vv file carries a password:\n%s", text)
	}
	wantProxy := "https://" + proxy.ConnectUser + ":" + base64.RawURLEncoding.EncodeToString([]byte(token)) + "@" + gw
	for k, v := range map[string]string{"type": "spice", "host": proxy.ConnectHost, "tls-port": "5901", "proxy": wantProxy,
		"secure-channels": "all", "delete-this-file": "1", "host-subject": "O=virtconsole, CN=127.0.0.1"} {
		if got := vvValue(text, k); got != v {
			t.Errorf(".vv %s=%q, want %q", k, got, v)
		}
	}
	caPEM, _ := os.ReadFile(ca)
	if got := strings.ReplaceAll(vvValue(text, "ca"), `\n`, "\n"); got != string(caPEM) {
		t.Errorf(".vv ca is not the gateway's CA:\n%s", got)
	}

	serial := g.Boot(t, q)
	x := viewerThroughGateway(t, rv, ca, vvCopy(t, text), "")
	session := viewerSession(t, x, p, "")
	t.Logf("remote-viewer's channels through the gateway after %v", time.Since(start).Round(time.Millisecond))
	log := p.log.String()
	starts := logLines(log, "session start")
	for _, l := range starts {
		if l.session != session || l.console != tlsAddr {
			t.Errorf("channel %s of session %q to %s; want every channel under %s to QEMU's TLS port %s:\n%s", l.channel, l.session, l.console, session, tlsAddr, log)
		}
	}
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `msg="session start"`) && !strings.Contains(l, "via=connect") {
			t.Errorf("a session that did not come through the gateway: %s", l)
		}
	}
	if !strings.Contains(log, "auth=spice-ticket-takeover") {
		t.Errorf("the proxy did not supply the SPICE password:\n%s", log)
	}
	// The audit log: a session_start for each channel, with the token's ID.
	var audited []string
	for _, rec := range readAudit(t, auditPath) {
		if rec["event"] == "session_start" && rec["outcome"] == "ok" {
			if rec["token_id"] != resolver.TokenID(token) || rec["kind"] != "spice" {
				t.Errorf("audit record %v: want token_id %s, kind spice", rec, resolver.TokenID(token))
			}
			audited = append(audited, str(rec["channel"]))
		}
	}
	if !containsAll(audited, viewerSessionChannels) {
		t.Errorf("audited channels %v, want %v", audited, viewerSessionChannels)
	}
	screenshot(t, x.displayFile)
	xdo := xdotoolOn(t, xdotool, x)
	win := viewerWindow(t, x, xdo, func() bool { return true })
	xdoTypeIntoGuest(t, serial, xdo, win)
	live := len(qemuChannels(t, q))

	// The same file again, while the first viewer is live: its main
	// channel is refused at the link; QEMU sees nothing of it.
	refusedBefore := strings.Count(p.log.String(), "refused a main:0 link")
	second := viewerThroughGateway(t, rv, ca, vvCopy(t, text), "")
	waitFor(t, 60*time.Second, "the proxy's refusal of the second viewer", func() bool {
		return strings.Count(p.log.String(), "refused a main:0 link") > refusedBefore
	})
	if n := len(qemuChannels(t, q)); n != live || !q.Alive() {
		t.Errorf("QEMU has %d channels (alive %v) after the second viewer; want the first session's %d", n, q.Alive(), live)
	}
	stopViewer(t, second)
	stopViewer(t, x)
	waitFor(t, 20*time.Second, "the first session's end", func() bool {
		log := p.log.String()
		return strings.Count(log, `msg="session end"`) >= strings.Count(log, `msg="session start"`)
	})

	// After it ended: the spent token is refused at the CONNECT (407).
	spent := strings.Count(p.log.String(), "status=407")
	third := viewerThroughGateway(t, rv, ca, vvCopy(t, text), "")
	waitFor(t, 60*time.Second, "the proxy's 407 for the spent token", func() bool {
		return strings.Count(p.log.String(), "status=407") > spent
	})
	stopViewer(t, third)
	if n := len(qemuChannels(t, q)); n != 0 || !q.Alive() {
		t.Errorf("QEMU has %d channels (alive %v) after the spent token's viewer", n, q.Alive())
	}

	// SPICE_PROXY in the environment instead of proxy= in the file.
	envOut := filepath.Join(t.TempDir(), "env.vv")
	if r := run(t, nil, "vv", "--token-file", writeToken(t, envToken), "--gateway", "https://"+gw, "--ca-file", ca, "-o", envOut); r.code != 0 {
		t.Fatalf("vv: exit %d: %s", r.code, r.stderr)
	}
	raw, _ = os.ReadFile(envOut)
	var noProxy []string
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, "proxy=") {
			noProxy = append(noProxy, l)
		}
	}
	proxyFile := filepath.Join(t.TempDir(), "spice-proxy")
	if err := os.WriteFile(proxyFile, []byte(vvValue(string(raw), "proxy")), 0o600); err != nil {
		t.Fatal(err)
	}
	envViewer := viewerThroughGateway(t, rv, ca, vvCopy(t, strings.Join(noProxy, "\n")), proxyFile)
	viewerSession(t, envViewer, p, session)
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// connectReply sends a CONNECT for target over c with the extra header
// lines and returns the gateway's answer; the reader holds what follows
// it.
func connectReply(t *testing.T, c net.Conn, target string, header ...string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req := "CONNECT " + target + " HTTP/1.0\r\nHost: " + target + "\r\n"
	for _, h := range header {
		req += h + "\r\n"
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return resp, br
}

// basic is a Proxy-Authorization header with password pass.
func basic(pass string) string {
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(proxy.ConnectUser+":"+pass))
}

// TestSPICEGatewayRefusals: scripted TLS clients at the gateway. No or a
// wrong credential is 407 with Proxy-Authenticate; a CONNECT to another
// host or port (QEMU's own address, the proxy's websocket port, an
// external address) is 403 even with the right token; a GET is 405; these
// count toward the per-address limit on refused tokens that websockets
// share (429 on either listener). A cleartext client gets no HTTP
// answer. None of this reaches QEMU. The right token still opens a SPICE
// session through the tunnel, with a scripted viewer doing TLS inside it.
func TestSPICEGatewayRefusals(t *testing.T) {
	const token = "gateway-refusals-1"
	b := startSPICEBed(t, "", map[string]string{token: ""}, append([]string{"--max-failures", "2"}, gatewayFlags...)...)
	gw := gatewayAddr(t, b.p)
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(b.ca)
	pool.AppendCertsFromPEM(caPEM)
	dialGW := func() net.Conn {
		c := tls.Client(dialTCP(t, gw), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		t.Cleanup(func() { c.Close() })
		return c
	}
	right := basic(proxy.EncodeConnectToken(token))

	for _, tc := range []struct {
		name, target string
		header       []string
		status       int
	}{
		{"QEMU's own address", b.tlsAddr, []string{right}, http.StatusForbidden},
		{"the proxy's websocket port", b.p.addr, []string{right}, http.StatusForbidden},
		{"an external address", "example.com:443", []string{right}, http.StatusForbidden},
		{"another port", proxy.ConnectHost + ":5900", []string{right}, http.StatusForbidden},
		{"no credential", proxy.ConnectTarget, nil, http.StatusProxyAuthRequired},
		{"a wrong token", proxy.ConnectTarget, []string{basic(proxy.EncodeConnectToken("not-a-token"))}, http.StatusProxyAuthRequired},
		{"past the refused-token limit", proxy.ConnectTarget, []string{basic(proxy.EncodeConnectToken("not-a-token"))}, http.StatusTooManyRequests},
	} {
		resp, _ := connectReply(t, dialGW(), tc.target, tc.header...)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: CONNECT %s: %s, want %d", tc.name, tc.target, resp.Status, tc.status)
		}
		if tc.status == http.StatusProxyAuthRequired && resp.Header.Get("Proxy-Authenticate") != `Basic realm="virtconsole"` {
			t.Errorf("%s: Proxy-Authenticate %q", tc.name, resp.Header.Get("Proxy-Authenticate"))
		}
	}
	// The websocket listener shares the limit.
	h := http.Header{}
	h.Set("Authorization", "Bearer not-a-token-either")
	_, err := wsconn.Dial(spiceCtx(t), "wss://"+b.p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: clientTLS(t, b.ca), Subprotocols: []string{"binary"}})
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a wrong token at the websocket listener past the limit the gateway's refusals reached: %v, want 429", err)
	}
	// A GET is not a CONNECT.
	c := dialGW()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: " + gw + "\r\n\r\n"))
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /: %v %v, want 405", resp, err)
	}
	// Cleartext at the TLS listener: no HTTP answer.
	plain := dialTCP(t, gw)
	plain.SetDeadline(time.Now().Add(10 * time.Second))
	plain.Write([]byte("CONNECT " + proxy.ConnectTarget + " HTTP/1.0\r\n" + right + "\r\n\r\n"))
	if line, _ := bufio.NewReader(plain).ReadString('\n'); strings.HasPrefix(line, "HTTP/1.") && strings.Contains(line, " 200 ") {
		t.Errorf("a cleartext CONNECT at the TLS gateway got %q", line)
	}
	plain.Close()
	if n := len(qemuChannels(t, b.q)); n != 0 {
		t.Fatalf("QEMU has %d channels after the refused CONNECTs", n)
	}

	// The right token, past the address's limit, still opens a session:
	// 200, TLS inside the tunnel (the gateway's certificate), the link.
	tunnel := dialGW()
	resp, br := connectReply(t, tunnel, proxy.ConnectTarget, right)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT with the token: %s", resp.Status)
	}
	if br.Buffered() != 0 {
		t.Fatalf("%d bytes after the 200", br.Buffered())
	}
	tunnel.SetDeadline(time.Time{})
	inner := tls.Client(tunnel, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	main, err := spicetest.Open(spiceCtx(t), inner, spicetest.LinkOptions{})
	if err != nil {
		t.Fatalf("SPICE through the tunnel: %v", err)
	}
	defer main.Close()
	if main.SessionID == 0 {
		t.Fatal("no session id on the main channel through the tunnel")
	}
	if chans := qemuChannels(t, b.q); len(chans) != 1 || !chans[0].TLS {
		t.Errorf("QEMU's channels %+v; want the one main channel, over TLS", chans)
	}
	if !regexp.MustCompile(`msg="session start".*channel=main:0`).MatchString(b.p.log.String()) {
		t.Errorf("no session start of the main channel in the proxy log:\n%s", b.p.log.String())
	}
}

// TestVVViewerAndErrors: "vv --viewer PATH" hands the viewer the .vv
// file as its one argument, in a private directory (0700) with mode
// 0600, and removes it when the viewer exits; without -o the file goes to
// standard output; a missing or cleartext gateway, or one that is not a
// gateway, is a one-line error. No QEMU is needed: the file is made from
// the token and what the gateway says of itself.
func TestVVViewerAndErrors(t *testing.T) {
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	const token = "vv-viewer-token-1"
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "spice", Address: "127.0.0.1:1"}})
	p := startDaemon(t, append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir,
		"--tokens", tokens}, gatewayFlags...)...)
	gw := "https://" + gatewayAddr(t, p)
	tokFile := writeToken(t, token)

	std := run(t, nil, "vv", "--token-file", tokFile, "--gateway", gw, "--ca-file", ca, "--title", "my vm")
	if std.code != 0 || !strings.HasPrefix(std.stdout, "[virt-viewer]\n") || vvValue(std.stdout, "title") != "my vm" {
		t.Fatalf("vv to stdout: exit %d\n%s%s", std.code, std.stdout, std.stderr)
	}

	// A viewer that reports what it was given.
	report := filepath.Join(t.TempDir(), "report")
	viewer := writeFile(t, "#!/bin/sh\n{ echo \"$#\"; stat -c %a \"$1\" \"$(dirname \"$1\")\"; cat \"$1\"; } > "+report+"\n")
	os.Chmod(viewer, 0o700)
	r := run(t, nil, "vv", "--token-file", tokFile, "--gateway", gw, "--ca-file", ca, "--title", "my vm", "--viewer", viewer)
	if r.code != 0 {
		t.Fatalf("vv --viewer: exit %d: %s", r.code, r.stderr)
	}
	got, _ := os.ReadFile(report)
	lines := strings.SplitN(string(got), "\n", 4)
	if len(lines) < 4 || lines[0] != "1" || lines[1] != "600" || lines[2] != "700" || lines[3] != std.stdout {
		t.Fatalf("the viewer got %q; want one argument, a 0600 file in a 0700 directory holding the .vv", got)
	}
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "virtconsole-vv-*", "console.vv")); len(left) != 0 {
		t.Errorf("the .vv file outlived the viewer: %v", left)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no gateway", nil, "no gateway: give --gateway"},
		{"cleartext", []string{"--gateway", "http://" + strings.TrimPrefix(gw, "https://")}, "is cleartext"},
		{"not a gateway", []string{"--gateway", "https://" + p.addr, "--ca-file", ca}, "is --gateway the proxy's --spice-connect-listen address?"},
		{"--passthrough at a terminating gateway", []string{"--gateway", gw, "--ca-file", ca, "--passthrough"}, "supplies the SPICE password itself; drop --passthrough"},
	} {
		r := run(t, nil, append([]string{"vv", "--token-file", tokFile}, tc.args...)...)
		if r.code == 0 || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q", tc.name, r.code, r.stdout)
		}
		checkOneLine(t, r.stderr, tc.want)
	}
}

// TestREADMESPICEGateway runs the README's "Native SPICE clients" block:
// the proxy with the gateway, "virtconsole vv", and remote-viewer (under
// Xvfb, trusting the test CA as the README says it must) opening the file
// and reaching QEMU's SPICE TLS port through the gateway. Ports become
// free loopback ones; ./pki, tokens.json, ./spicetoken and console.vv
// temporary files; proxy.example the gateway's address.
func TestREADMESPICEGateway(t *testing.T) {
	var lines []string
	for _, l := range readmeSubsection(t, "Native SPICE clients: the CONNECT gateway and .vv files") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "virtconsole server proxy ") || !strings.HasSuffix(lines[0], " &") ||
		!strings.HasPrefix(lines[1], "virtconsole vv ") || lines[2] != "remote-viewer console.vv" {
		t.Fatalf("README's gateway block is not the proxy, vv and remote-viewer:\n%s", strings.Join(lines, "\n"))
	}
	bins := qemutest.Need(t, "xvfb-run", "remote-viewer", "unshare")
	qemutest.Require(t)
	dir := pki(t)
	q, _, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir})
	const token = "readme-gateway-token-1"
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "spice", Address: tlsAddr}})
	vvFile := filepath.Join(t.TempDir(), "console.vv")
	subst := strings.NewReplacer(" :6443", " 127.0.0.1:0", " :3128", " 127.0.0.1:0", "./pki/", dir+"/", "./pki", dir,
		"tokens.json", tokens, "./spicetoken", writeToken(t, token), "console.vv", vvFile)
	args := func(line string) []string {
		return strings.Fields(subst.Replace(strings.TrimSuffix(line, " &")))[1:]
	}
	p := startDaemon(t, args(lines[0])...)
	gw := gatewayAddr(t, p)
	vv := strings.ReplaceAll(lines[1], "proxy.example:3128", gw)
	if r := run(t, nil, args(vv)...); r.code != 0 {
		t.Fatalf("%s: exit %d: %s", vv, r.code, r.stderr)
	}
	x := viewerThroughGateway(t, bins[1], filepath.Join(dir, "ca-cert.pem"), vvFile, "")
	viewerSession(t, x, p, "")
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
}

// TestSPICEGatewayInsecureListener: with --listen-insecure the gateway
// speaks cleartext HTTP (the token in the clear to it, as the help says)
// but still TLS inside the tunnel, with --spice-connect-tls-dir's
// certificate; "vv --proxy-insecure" writes an http:// proxy URL. Without
// any certificate for the tunnel, or with --spice-connect-tls-dir alone,
// the proxy does not start, with a one-line reason.
func TestSPICEGatewayInsecureListener(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, _, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir})
	const token = "insecure-gateway-token-1"
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "spice", Address: tlsAddr}})
	base := []string{"server", "proxy", "--listen", "127.0.0.1:0", "--listen-insecure", "--connect-tls-dir", dir, "--tokens", tokens}

	for _, tc := range []struct {
		extra []string
		want  string
	}{
		{gatewayFlags, "--spice-connect-listen needs a server certificate for the TLS inside its tunnels"},
		{[]string{"--spice-connect-tls-dir", dir}, "--spice-connect-tls-dir goes with --spice-connect-listen"},
	} {
		r := run(t, nil, append(base, tc.extra...)...)
		if r.code != 1 {
			t.Errorf("%v: exit %d, want 1", tc.extra, r.code)
		}
		checkOneLine(t, r.stderr, tc.want)
	}

	p := startDaemon(t, append(base, "--spice-connect-tls-dir", dir, "--spice-connect-listen", "127.0.0.1:0")...)
	gw := loggedAddr(t, p, regexp.MustCompile(`spice-connect listening" address=http://(\S+)`), "the cleartext gateway's listening line")
	r := run(t, nil, "vv", "--token-file", writeToken(t, token), "--gateway", "http://"+gw, "--proxy-insecure")
	if r.code != 0 || !strings.HasPrefix(vvValue(r.stdout, "proxy"), "http://virtconsole:") {
		t.Fatalf("vv --proxy-insecure: exit %d, proxy=%q: %s", r.code, vvValue(r.stdout, "proxy"), r.stderr)
	}
	c := dialTCP(t, gw)
	defer c.Close()
	resp, _ := connectReply(t, c, proxy.ConnectTarget, basic(proxy.EncodeConnectToken(token)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("cleartext CONNECT with the token: %s", resp.Status)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	pool.AppendCertsFromPEM(caPEM)
	inner := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err := inner.Handshake(); err != nil {
		t.Fatalf("TLS inside the cleartext tunnel: %v", err)
	}
}
