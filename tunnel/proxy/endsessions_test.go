package proxy

import (
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
)

// EndSessions ends the sessions of the tokens it is told are revoked and
// leaves the others.
func TestEndSessions(t *testing.T) {
	// Two consoles: the viewers of one would share it (and its echoes).
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"revoked": {Type: "serial", Address: echoServer(t), Insecure: true},
		"kept":    {Type: "serial", Address: echoServer(t), Insecure: true},
	})
	gone, err := dial(t, wsURL(srv), bearer("revoked"))
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	kept, err := dial(t, wsURL(srv), bearer("kept"))
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	wantEcho(t, gone)
	wantEcho(t, kept)

	if n := p.EndSessions(func(tok string) bool { return tok == "revoked" }); n != 1 {
		t.Fatalf("EndSessions ended %d sessions, want 1", n)
	}
	gone.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := gone.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the revoked token's session is still open: read err %v", err)
	}
	wantEcho(t, kept)
	waitActive(t, p, 1)
}

func isTimeout(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}

func waitActive(t *testing.T, p *Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.Active() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d active sessions, want %d", p.Active(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
