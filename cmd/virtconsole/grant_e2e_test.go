package main

// Share links (grants) against the built proxy and the tiny Linux guest,
// as README's "Share links" runs them.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

const grantConsoleToken = "grant-console-token-0123456789abcdef"

var grantRE = regexp.MustCompile(`(?m)^grant:\s+(vcg1\.\S+)$`)

// TestShareLinks runs README's "Share links": a new key; the proxy with
// it; a view link for the console of alice's token (with a short --ttl)
// whose viewer, "virtconsole serial", sees the guest but cannot type, is
// ended at the expiry, after which the grant gets 403 "grant expired"; a
// forged and an altered grant get 403 "grant signature invalid"; a
// session share minted through the admin API joins alice's live session
// and is ended with it, then gets 403 "shared session has ended". No
// daemon log nor the audit log holds a grant or the token; the audit log
// says who minted and who used each grant.
func TestShareLinks(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	work := t.TempDir()
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Guest: true})
	tokens := writeTokens(t, map[string]resolver.Console{grantConsoleToken: {Type: "serial", Address: addr}})
	auditPath := filepath.Join(work, "audit.log")
	ca := filepath.Join(dir, "ca-cert.pem")

	lines := readmeSubsection(t, "Share links")
	if len(lines) != 5 {
		t.Fatalf("README's Share links block has %d commands, want 5:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var proxyAddr, adminAddr, id string
	sharedGrant := filepath.Join(work, "shared.grant")
	args := func(line string) []string {
		line = strings.ReplaceAll(line, "\\\n", " ")
		line = strings.NewReplacer("127.0.0.1:6443", proxyAddr, "--admin-listen 127.0.0.1:6444", "--admin-listen 127.0.0.1:0",
			"https://127.0.0.1:6444", "https://"+adminAddr, "./pki", dir, "tokens.json", tokens,
			"grant.key", filepath.Join(work, "grant.key"), "alice.token", writeToken(t, grantConsoleToken),
			"shared.grant", sharedGrant, "--ttl 15m", "--ttl 4s", "3f46e0a823f092c8", id).Replace(line)
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "virtconsole" {
			t.Fatalf("README line %q does not run virtconsole", line)
		}
		return f[1:]
	}
	if r := run(t, nil, args(lines[0])...); r.code != 0 {
		t.Fatalf("share --new-key: exit %d, %s", r.code, r.stderr)
	}
	proxyAddr = "127.0.0.1:0"
	p := startDaemon(t, append(args(lines[1]), "--audit-log", auditPath)...)
	proxyAddr, adminAddr = p.addr, adminAddrOf(t, p)

	alice := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, grantConsoleToken))
	typeUntil(t, alice, "echo before-$((20+22))\n", "before-42")

	// A view link of the console, good for 4 s.
	r := run(t, nil, args(lines[2])...)
	m := grantRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || !strings.Contains(r.stdout, "link:    https://"+p.addr+"/serial.html#token=vcg1.") {
		t.Fatalf("share --token-file: exit %d, %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	viewGrant := m[1]
	if strings.Contains(viewGrant, grantConsoleToken) {
		t.Fatal("the grant holds the token")
	}
	if err := os.WriteFile(sharedGrant, []byte(viewGrant+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bob := startClient(t, args(lines[3])...)
	waitFor(t, 30*time.Second, "the link's viewer seeing the scrollback", func() bool { return strings.Contains(bob.out.String(), "before-42") })
	io.WriteString(bob.stdin, "echo bob-$((1+1))\n")
	time.Sleep(500 * time.Millisecond)
	typeUntil(t, alice, "echo after-$((3+4))\n", "after-7")
	waitFor(t, 30*time.Second, "the link's viewer seeing alice's answer", func() bool { return strings.Contains(bob.out.String(), "after-7") })
	if strings.Contains(alice.out.String(), "bob-2") {
		t.Fatal("a view link's input reached the guest")
	}
	// At the expiry (plus the 5 s the replicas' clocks may differ) its
	// viewer is ended, and the grant is refused.
	bob.wait(t, 30*time.Second)
	if !strings.Contains(bob.errb.String(), "grant expired") {
		t.Fatalf("the link's viewer at its expiry: stderr %q", bob.errb.String())
	}
	dialGrant(t, p.addr, ca, viewGrant, http.StatusForbidden, "grant expired")

	// Forged (another key) and altered grants.
	other := filepath.Join(work, "other.key")
	run(t, nil, "share", "--new-key", other)
	r = run(t, nil, "share", "--token-file", writeToken(t, grantConsoleToken), "--role", "control", "--grant-key", other, "--json")
	var forged struct{ Grant string }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &forged) != nil {
		t.Fatalf("share --json: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	dialGrant(t, p.addr, ca, forged.Grant, http.StatusForbidden, "grant signature invalid")
	altered := []byte(viewGrant)
	altered[len("vcg1.")+3] ^= 1 // the claims, not the signature
	dialGrant(t, p.addr, ca, string(altered), http.StatusForbidden, "grant signature invalid")

	// A session share, minted through the admin API, joins alice's session
	// while it lives.
	r = run(t, nil, "sessions", "list", "--server", "https://"+adminAddr, "--tls-dir", dir, "--json")
	var list []proxy.SessionInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 1 {
		t.Fatalf("sessions list: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	id = list[0].ID
	r = run(t, nil, args(lines[4])...)
	if m = grantRE.FindStringSubmatch(r.stdout); r.code != 0 || m == nil {
		t.Fatalf("share --session: exit %d, %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	sessionGrant := m[1]
	carol := dialGrant(t, p.addr, ca, sessionGrant, 0, "")
	typeUntil(t, alice, "echo shared-$((5+6))\n", "shared-11")
	readFor(t, carol, "shared-11")
	alice.stdin.Close()
	alice.wait(t, 30*time.Second)
	carol.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, carol)
	if ce := carol.(*wsconn.Conn).PeerClose(); ce == nil || ce.Code != wsconn.CloseGoingAway || ce.Reason != "shared session has ended" {
		t.Fatalf("the session share's viewer when the session ended: %v, close %+v", err, ce)
	}
	dialGrant(t, p.addr, ca, sessionGrant, http.StatusForbidden, "shared session has ended")

	// The audit log: who minted the session share, who used each grant;
	// no log holds a grant or the token.
	waitFor(t, 10*time.Second, "the audit log's session ends", func() bool {
		b, _ := os.ReadFile(auditPath)
		return strings.Count(string(b), `"event":"session_end"`) == 3
	})
	audit, _ := os.ReadFile(auditPath)
	for _, want := range []string{`"event":"grant_minted"`, `"by":"`, `"session":"` + id + `"`, `"console":"` + resolver.TokenID(grantConsoleToken) + `"`} {
		if !strings.Contains(string(audit), want) {
			t.Errorf("the audit log has no %s:\n%s", want, audit)
		}
	}
	for _, secret := range []string{grantConsoleToken, viewGrant, sessionGrant, forged.Grant, string(altered)} {
		for name, text := range map[string]string{"proxy log": p.log.String(), "audit log": string(audit)} {
			if strings.Contains(text, secret) {
				t.Fatalf("the %s holds a secret (%.12s…)", name, secret)
			}
		}
	}
}

// dialGrant opens a websocket with grant as its token; with a status it
// wants that refusal and its reason instead.
func dialGrant(t *testing.T, addr, ca, grant string, status int, reason string) net.Conn {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+grant)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := wsconn.Dial(ctx, "wss://"+addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: clientTLS(t, ca), Subprotocols: []string{"binary"}})
	if status == 0 {
		if err != nil {
			t.Fatalf("dial with a grant: %v", err)
		}
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != status || he.Reason != reason {
		t.Fatalf("dial with a grant: %v, want %d %q", err, status, reason)
	}
	return nil
}

// readFor reads ws until what it read holds want.
func readFor(t *testing.T, ws net.Conn, want string) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for !strings.Contains(string(got), want) {
		n, err := ws.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q, then %v; want %q", got, err, want)
		}
	}
}

// TestShareLinkVNC: a view link of a VNC console ("virtconsole share
// --token-file", the grant given to "virtconsole vnc" as its token) shows
// the guest but its keys never reach it, while the token's viewer types.
func TestShareLinkVNC(t *testing.T) {
	key := filepath.Join(t.TempDir(), "grant.key")
	if r := run(t, nil, "share", "--new-key", key); r.code != 0 {
		t.Fatalf("share --new-key: exit %d, %s", r.code, r.stderr)
	}
	_, common, boot := vncGuestBehindProxy(t, "share-link-vnc", "--grant-key", key)
	r := run(t, nil, "share", "--token-file", common[len(common)-1], "--role", "view", "--ttl", "10m", "--grant-key", key)
	m := grantRE.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("share: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
	viewV := startVNC(t, append(append([]string{}, common[:len(common)-1]...), writeToken(t, m[1]))...)
	ctlV := startVNC(t, common...)
	serial := boot()
	view, viewAlive := exclusiveViewer(t, viewV.port)
	ctl, _ := exclusiveViewer(t, ctlV.port)

	typeIntoGuest(t, serial, func(line string) error { return rfbType(ctl, line) })
	for range 3 {
		if err := rfbType(view, "\necho link-$((5+5)) > /dev/ttyS0\n"); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); !serial.Contains("after-9"); {
		if time.Now().After(deadline) {
			t.Fatalf("no answer to the control viewer's line; serial: %q", serial.Output())
		}
		rfbType(ctl, "\necho after-$((8+1)) > /dev/ttyS0\n")
		waitForOr(2*time.Second, func() bool { return serial.Contains("after-9") })
	}
	if serial.Contains("link-10") {
		t.Fatalf("the view link's keys reached the guest: %q", serial.Output())
	}
	if !viewAlive() {
		t.Fatal("the view link's viewer was disconnected")
	}
}
