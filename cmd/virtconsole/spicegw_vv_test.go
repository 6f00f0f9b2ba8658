package main

// End-to-end test of the .vv download page (vv.html, "virtconsole open
// --vv"): headless Chromium downloads the file, remote-viewer opens it.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// TestSPICEGatewayVVDownload: "virtconsole open --vv" prints the link of
// the proxy's vv.html with the token in the fragment; headless Chromium
// opens it and saves console.vv, the file 'virtconsole vv' writes for the
// gateway at the link's host and the gateway's port, with no URL it
// requested and no proxy log line holding the token (the page POSTs it in
// a header), and nothing blocked by the page's policy. remote-viewer opens
// the downloaded file and reaches the guest through the gateway. A link
// with an unknown token shows the proxy's reason and saves nothing.
func TestSPICEGatewayVVDownload(t *testing.T) {
	bins := qemutest.Need(t, chromiumBinary, "xvfb-run", "remote-viewer", "unshare")
	start := time.Now()
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	q, _, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir})
	const token, bogus = "vv-download-token-1", "vv-download-not-a-token"
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "spice", Address: tlsAddr}})
	p := startDaemon(t, append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir,
		"--tokens", tokens, "--single-use", "--web"}, gatewayFlags...)...)
	gw := gatewayAddr(t, p)
	link := func(tok string) string {
		r := run(t, nil, "open", "--vv", "--token-file", writeToken(t, tok), "--proxy", "https://"+p.addr)
		if r.code != 0 {
			t.Fatalf("open --vv: exit %d: %s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	l := link(token)
	if want := "https://" + p.addr + "/vv.html#token=" + token; l != want {
		t.Fatalf("open --vv printed %q, want %q", l, want)
	}

	b := startChromium(t, bins[0], spkiHash(t, filepath.Join(dir, "server-cert.pem")))
	downloads := t.TempDir()
	b.call(t, "", "Browser.setDownloadBehavior", map[string]any{"behavior": "allow", "downloadPath": downloads}, nil)
	pageState := func(session string) consoleState {
		var st consoleState
		b.eval(t, session, "window.consoleState || {}", &st)
		return st
	}

	// An unknown token: the proxy's reason on the page, no file.
	session := b.openPage(t, link(bogus))
	waitFor(t, 30*time.Second, "the page's refusal", func() bool { return pageState(session).State == "refused" })
	if st := pageState(session); !strings.Contains(st.Reason, "unknown token") {
		t.Errorf("refused page's reason %q", st.Reason)
	}

	b.openPage(t, "about:blank") // a new document: the next link differs only in its fragment
	session = b.openPage(t, l)
	saved := filepath.Join(downloads, "console.vv")
	var text string
	waitFor(t, 30*time.Second, "console.vv in the download directory", func() bool {
		raw, err := os.ReadFile(saved)
		text = string(raw)
		return err == nil && strings.HasSuffix(text, "\n")
	})
	st := pageState(session)
	if st.State != "downloaded" || len(st.Violations) > 0 {
		t.Errorf("page state %q (%s), policy violations %v", st.State, st.Reason, st.Violations)
	}
	if r := run(t, nil, "vv", "--token-file", writeToken(t, token), "--gateway", "https://"+gw, "--ca-file", ca,
		"--title", "SPICE console (release the cursor: shift+f12)"); r.code != 0 || r.stdout != text {
		t.Errorf("the downloaded file is not what 'vv' writes (exit %d, %s):\n%s\nvv:\n%s", r.code, r.stderr, text, r.stdout)
	}
	if got := vvValue(text, "proxy"); !strings.HasSuffix(got, "@"+gw) || !strings.Contains(got, proxy.EncodeConnectToken(token)) {
		t.Errorf(".vv proxy=%q; want the token at the gateway %s", got, gw)
	}
	for _, u := range b.requested() {
		if strings.Contains(u, token) || strings.Contains(u, proxy.EncodeConnectToken(token)) {
			t.Errorf("the page requested a URL holding the token: %s", u)
		}
	}
	if log := p.log.String(); strings.Contains(log, token) || strings.Contains(log, bogus) {
		t.Errorf("a token in the proxy's log:\n%s", log)
	}

	// The user opens the file.
	x := viewerThroughGateway(t, bins[2], ca, vvCopy(t, text), "")
	viewerSession(t, x, p, "")
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// TestSPICEGatewayAdminVV: the bundled server ("virtconsole server" on the
// test libvirtd) returns a domain's .vv file on its admin listener (GET
// /v1/vv, fetched with curl and an administrator's certificate): the
// token libvirt holds for the domain's SPICE console in the proxy URL, the
// gateway's certificate in ca and host-subject. remote-viewer opens it and
// reaches the domain's SPICE TLS port through the gateway; the token is
// then spent and libvirt holds a fresh one. Without a client certificate
// the API answers 401, for an unknown domain 404.
func TestSPICEGatewayAdminVV(t *testing.T) {
	bins := qemutest.Need(t, "curl", "xvfb-run", "remote-viewer", "unshare")
	d := libvirttest.Start(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{SPICE: true})
	if r := run(t, nil, "enable", dom.Name, "--type", "spice"); r.code != 0 {
		t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
	}
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	srv := startDaemon(t, append([]string{"server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir,
		"--connect", d.URI, "--admin-listen", "127.0.0.1:0", "--admin-client-ca", ca}, gatewayFlags...)...)
	gw := gatewayAddr(t, srv)
	api := "https://" + adminAddrOf(t, srv) + "/v1/vv?gateway=https://" + gw + "&domain="
	creds := []string{"--cacert", ca, "--cert", filepath.Join(dir, "client-cert.pem"), "--key", filepath.Join(dir, "client-key.pem")}

	tok := tokenOf(t, dom.Name, "spice")
	vvFile := filepath.Join(t.TempDir(), "console.vv")
	out, errOut, code := curl(t, bins[0], append(creds, "-f", "-o", vvFile, "-w", "%{content_type}", api+dom.Name)...)
	if code != 0 || out != "application/x-virt-viewer" {
		t.Fatalf("curl GET /v1/vv: exit %d, type %q: %s", code, out, errOut)
	}
	raw, _ := os.ReadFile(vvFile)
	text := string(raw)
	if got := vvValue(text, "proxy"); got != "https://"+proxy.ConnectUser+":"+proxy.EncodeConnectToken(tok)+"@"+gw {
		t.Errorf(".vv proxy=%q; want the domain's token %s at the gateway", got, resolver.TokenID(tok))
	}
	if vvValue(text, "host-subject") != "O=virtconsole, CN=127.0.0.1" || vvValue(text, "title") != dom.Name+" (release the cursor: shift+f12)" {
		t.Errorf("the .vv file:\n%s", text)
	}
	for query, want := range map[string]string{api + "no-such-domain": "404", api + dom.Name + "&index=3": "404"} {
		if out, errOut, _ := curl(t, bins[0], append(creds, "-o", "/dev/null", "-w", "%{http_code}", query)...); out != want {
			t.Errorf("GET %s: %s, want %s (%s)", query, out, want, errOut)
		}
	}
	if out, _, _ := curl(t, bins[0], "--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}", api+dom.Name); out != "401" {
		t.Errorf("GET /v1/vv without a client certificate: %s, want 401", out)
	}

	x := viewerThroughGateway(t, bins[2], ca, vvFile, "")
	viewerSession(t, x, srv, "")
	if _, tlsPort := dom.SPICEPorts(t); !strings.Contains(srv.log.String(), "console=127.0.0.1:"+strconv.Itoa(tlsPort)) {
		t.Errorf("the session did not use SPICE's TLS port %d:\n%s", tlsPort, srv.log.String())
	}
	if tokenOf(t, dom.Name, "spice") == tok {
		t.Error("the token is unchanged in libvirt after its session")
	}
	if strings.Contains(srv.log.String(), tok) {
		t.Error("the server logged the token")
	}
}
