package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/grant"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

func grantProxy(t *testing.T, tokens map[string]resolver.Console) (*Proxy, string, *logBuffer, *grant.Key, *recorder) {
	t.Helper()
	p, srv, logs := newProxy(t, tokens)
	key, err := grant.NewKey(bytes.Repeat([]byte{7}, grant.MinKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	p.GrantKey = key
	st := p.Resolver.(*resolver.Static)
	p.GrantConsole = func(ctx context.Context, c *grant.Claims) (protocols.Target, error) {
		return st.ResolveID(ctx, c.Console)
	}
	p.Limiter = nil
	rec := newRecorder()
	p.Observer = rec
	return p, wsURL(srv), logs, key, rec
}

func mint(t *testing.T, k *grant.Key, c grant.Claims, ttl time.Duration) string {
	t.Helper()
	g, _, err := k.Mint(c, time.Now(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func wantRefusal(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != status || he.Reason != reason {
		t.Fatalf("dial: %v, want %d %q", err, status, reason)
	}
}

// TestGrantConsole: a view grant for a console (named by its token's ID)
// opens it as a viewer whose input is dropped, its session says which
// grant, and the grant stops working at its expiry (a session it opened
// is ended then too); a forged, altered or wrong-key grant is 403, as is
// one for a SPICE console; no log line holds the grant or the token.
func TestGrantConsole(t *testing.T) {
	d, addr := startChardev(t, 0)
	_, url, logs, key, rec := grantProxy(t, map[string]resolver.Console{"s3cret": {Type: "serial", Address: addr, Insecure: true},
		"sp": {Type: "spice", Address: "127.0.0.1:1", Insecure: true}})

	ctl, err := dial(t, url, bearer("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	next(t, rec.starts)
	g := mint(t, key, grant.Claims{Console: resolver.TokenID("s3cret"), Role: protocols.RoleView, By: "alice"}, 2*time.Second)
	v, err := dial(t, url, withRole(g, protocols.RoleControl)) // cannot ask for more
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	s := next(t, rec.starts)
	if s.Role != protocols.RoleView || s.Grant == nil || s.Grant.By != "alice" || s.Grant.JTI == "" || s.TokenID != resolver.TokenID("s3cret") {
		t.Fatalf("grant session: role %s, grant %+v, token_id %s", s.Role, s.Grant, s.TokenID)
	}
	v.Write([]byte("v"))
	ctl.Write([]byte("1"))
	if got := readUntil(t, v, "<1>"); strings.Contains(got, "<v>") {
		t.Fatalf("the view grant's input reached the console: %q", got)
	}
	if got, _ := d.read(); got != "1" {
		t.Fatalf("console read %q", got)
	}

	other, _ := grant.NewKey(bytes.Repeat([]byte{8}, grant.MinKeyLen))
	forged := mint(t, other, grant.Claims{Console: resolver.TokenID("s3cret"), Role: protocols.RoleControl}, time.Minute)
	_, err = dial(t, url, bearer(forged))
	wantRefusal(t, err, http.StatusForbidden, "grant signature invalid")
	altered := g[:len(g)-2] + "AA"
	if altered == g {
		altered = g[:len(g)-2] + "BB"
	}
	_, err = dial(t, url, bearer(altered))
	wantRefusal(t, err, http.StatusForbidden, "grant signature invalid")
	gone := mint(t, key, grant.Claims{Console: resolver.TokenID("nope"), Role: protocols.RoleView}, time.Minute)
	_, err = dial(t, url, bearer(gone))
	wantRefusal(t, err, http.StatusForbidden, "shared console no longer exists")
	spice := mint(t, key, grant.Claims{Console: resolver.TokenID("sp"), Role: protocols.RoleControl}, time.Minute)
	_, err = dial(t, url, bearer(spice))
	wantRefusal(t, err, http.StatusForbidden, "share links are not supported for spice consoles")

	// At its expiry (plus the skew) the grant's session ends and the
	// grant is refused.
	err, ce := readEnd(t, v)
	if ce == nil || ce.Reason != KilledByGrantExpiry {
		t.Fatalf("grant session end: %v, close %+v", err, ce)
	}
	_, err = dial(t, url, bearer(g))
	wantRefusal(t, err, http.StatusForbidden, "grant expired")

	for _, secret := range []string{g, "s3cret", forged} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the log holds a secret %q:\n%s", secret, logs)
		}
	}
}

// TestGrantSession: a grant naming a live session joins its console
// while it lives; its viewers are ended when it ends, and the grant is
// refused from then on. Without GrantKey a grant is an unknown token.
func TestGrantSession(t *testing.T) {
	addr := echoServer(t)
	p, url, _, key, rec := grantProxy(t, map[string]resolver.Console{"s3cret": {Type: "serial", Address: addr, Insecure: true}})
	p.NoSerialSharing = true // each viewer its own connection, like VNC

	owner, err := dial(t, url, bearer("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	id := next(t, rec.starts).ID
	for deadline := time.Now().Add(10 * time.Second); len(p.Sessions()) == 0; { // listed just after SessionStart
		if time.Now().After(deadline) {
			t.Fatal("the session is not listed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g := mint(t, key, grant.Claims{Session: id, Role: protocols.RoleControl}, time.Minute)
	v, err := dial(t, url, bearer(g))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if s := next(t, rec.starts); s.Grant == nil || s.Grant.Session != id || s.Role != protocols.RoleControl {
		t.Fatalf("session share: %+v", s.Grant)
	}
	wantEcho(t, v)

	owner.Close()
	err, ce := readEnd(t, v)
	if ce == nil || ce.Reason != KilledBySharedEnd {
		t.Fatalf("shared viewer end: %v, close %+v", err, ce)
	}
	_, err = dial(t, url, bearer(g))
	wantRefusal(t, err, http.StatusForbidden, "shared session has ended")

	p.GrantKey = nil
	_, err = dial(t, url, bearer(g))
	wantRefusal(t, err, http.StatusNotFound, "unknown token")
}

// TestGrantLimiter: refused grants count toward the Limiter like unknown
// tokens: past its limit the address gets 429.
func TestGrantLimiter(t *testing.T) {
	p, url, _, key, _ := grantProxy(t, map[string]resolver.Console{"s3cret": {Type: "serial", Address: echoServer(t), Insecure: true}})
	p.Limiter = NewLimiter(2, time.Minute)
	other, _ := grant.NewKey(bytes.Repeat([]byte{9}, grant.MinKeyLen))
	forged := mint(t, other, grant.Claims{Console: resolver.TokenID("s3cret"), Role: protocols.RoleView}, time.Minute)
	for range 2 {
		_, err := dial(t, url, bearer(forged))
		wantRefusal(t, err, http.StatusForbidden, "grant signature invalid")
	}
	_, err := dial(t, url, bearer(forged))
	wantStatus(t, err, http.StatusTooManyRequests)
	good := mint(t, key, grant.Claims{Console: resolver.TokenID("s3cret"), Role: protocols.RoleView}, time.Minute)
	c, err := dial(t, url, bearer(good)) // a valid grant still opens its session
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
