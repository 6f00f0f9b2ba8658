package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// TestShareLinkLibvirt: "virtconsole share DOMAIN" against the real
// libvirtd and the bundled server: a view grant for the domain's VNC
// console (named by domain, kind and index: no token in it, none spent)
// opens a session to ServerInit through the server, as a view viewer;
// after its expiry the same grant gets 403 "grant expired", an altered one
// 403 "grant signature invalid"; no log holds the grant.
func TestShareLinkLibvirt(t *testing.T) {
	d := libvirttest.Start(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, NoPTY: true})
	if r := run(t, nil, "enable", dom.Name); r.code != 0 {
		t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { runCleanup("disable", dom.Name) })
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	key := filepath.Join(t.TempDir(), "grant.key")
	if r := run(t, nil, "share", "--new-key", key); r.code != 0 {
		t.Fatalf("share --new-key: exit %d: %s", r.code, r.stderr)
	}
	srv := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir,
		"--connect", libvirttest.URI, "--grant-key", key)

	minted := time.Now()
	r := run(t, nil, "share", dom.Name, "--type", "vnc", "--role", "view", "--ttl", "8s", "--grant-key", key,
		"--proxy", "https://"+srv.addr, "--json")
	if r.code != 0 {
		t.Fatalf("share %s: exit %d: %s", dom.Name, r.code, r.stderr)
	}
	var out struct{ Link, Grant string }
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || !strings.HasPrefix(out.Grant, "vcg1.") {
		t.Fatalf("share --json: %v: %s", err, r.stdout)
	}
	if !strings.HasPrefix(out.Link, "https://"+srv.addr+"/vnc.html#") || strings.Contains(strings.SplitN(out.Link, "#", 2)[0], "vcg1.") {
		t.Fatalf("link %q: want the VNC page with the grant in the fragment only", out.Link)
	}
	token := tokenOf(t, dom.Name, "vnc")
	if strings.Contains(out.Grant, token) {
		t.Fatal("the grant holds the console's token")
	}

	ws := dialGrant(t, srv.addr, ca, out.Grant, 0, "")
	if name, _, _, reason := rfbHandshake(t, ws); !strings.HasPrefix(name, "QEMU") {
		t.Fatalf("ServerInit %q, reason %q", name, reason)
	}
	waitFor(t, 10*time.Second, "the view session's log line", func() bool {
		return strings.Contains(srv.log.String(), "role=view")
	})
	if tokenOf(t, dom.Name, "vnc") != token {
		t.Error("the grant spent the domain's single-use token")
	}

	altered := out.Grant[:len(out.Grant)-2] + "xx"
	dialGrant(t, srv.addr, ca, altered, 403, "grant signature invalid")
	// The expiry, and the 5 s of clock skew the proxy allows, must pass.
	time.Sleep(time.Until(minted.Add(8*time.Second + 5*time.Second + time.Second)))
	dialGrant(t, srv.addr, ca, out.Grant, 403, "grant expired")

	if strings.Contains(srv.log.String(), out.Grant) || strings.Contains(srv.log.String(), token) {
		t.Fatal("the server logged the grant or the token")
	}
}
