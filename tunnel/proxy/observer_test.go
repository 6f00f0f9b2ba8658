package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// recorder is an Observer that hands each event to the test.
type recorder struct {
	refused chan *Refusal
	starts  chan *Session
	ends    chan *Session
}

func newRecorder() *recorder {
	return &recorder{make(chan *Refusal, 10), make(chan *Session, 10), make(chan *Session, 10)}
}

func (r *recorder) Refused(e *Refusal)      { c := *e; r.refused <- &c }
func (r *recorder) SessionStart(s *Session) { r.starts <- s }
func (r *recorder) SessionEnd(s *Session)   { r.ends <- s }

func next[T any](t *testing.T, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	panic("unreachable")
}

// TestObserver: the Observer hears of refusals (with the status, reason,
// client and token id, never the token; the console when one was
// resolved), of a session's start (setup
// time, target) and its bytes while it runs, of its end (outcome,
// duration, bytes), of a start that fails after the upgrade, and of the
// sessions EndSessions and Shutdown kill, with who killed them.
func TestObserver(t *testing.T) {
	echo := echoServer(t)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	down := closed.Addr().String()
	closed.Close()
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"tok-down":    {Type: "serial", Address: down, Insecure: true},
		"tok-ok":      {Type: "serial", Address: echo, Insecure: true},
		"tok-revoked": {Type: "serial", Address: echo, Insecure: true},
		"tok-refuse":  {Type: "console", Address: echo, Insecure: true},
	})
	p.Limiter = nil
	rec := newRecorder()
	p.Observer = Observers{rec}
	p.Handshake = func(ctx context.Context, tg protocols.Target, token string, su bool) (protocols.Handshaker, func(), error) {
		hs, rel, err := p.DefaultHandshake(ctx, tg, token, su)
		if token == "tok-refuse" {
			return refuser{hs}, rel, err
		}
		return hs, rel, err
	}

	_, err := dial(t, wsURL(srv), bearer("no-such-token"))
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown token: %v", err)
	}
	r := next(t, rec.refused)
	if r.Status != 404 || r.Reason != "unknown token" || r.TokenID != resolver.TokenID("no-such-token") || !strings.HasPrefix(r.Client.Addr, "127.0.0.1:") {
		t.Fatalf("refusal %+v", r)
	}
	dial(t, wsURL(srv), bearer("tok-down"))
	if r := next(t, rec.refused); r.Status != http.StatusBadGateway || r.Target.Address != down || r.Target.Kind != protocols.KindSerial {
		t.Fatalf("refusal of an unreachable console %+v", r)
	}

	c, err := dial(t, wsURL(srv), bearer("tok-ok"))
	if err != nil {
		t.Fatal(err)
	}
	s := next(t, rec.starts)
	if s.StartErr != nil || s.StartOutcome() != StartOK || s.Setup <= 0 || s.Target.Kind != protocols.KindSerial ||
		s.Target.Address != echo || s.TokenID != resolver.TokenID("tok-ok") || len(s.ID) != 16 {
		t.Fatalf("start %+v", s)
	}
	wantEcho(t, c)
	// The counters are added to just after each write returns.
	for deadline := time.Now().Add(10 * time.Second); s.BytesToConsole.Load() != 2 || s.BytesFromConsole.Load() != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("live counters %d/%d, want 2/2", s.BytesToConsole.Load(), s.BytesFromConsole.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	if e := next(t, rec.ends); e != s || e.Outcome != EndClosed || e.Duration <= 0 || e.KilledBy != "" {
		t.Fatalf("end %+v", e)
	}

	if c, err := dial(t, wsURL(srv), bearer("tok-refuse")); err == nil {
		c.Close() // upgraded; the viewer's handshake fails after that
	}
	if s := next(t, rec.starts); s.StartOutcome() != StartFailed || !strings.Contains(s.Reason, "no common security type") {
		t.Fatalf("failed start %+v", s)
	}

	for _, tc := range []struct {
		by   string
		kill func()
	}{
		{KilledByRevoke, func() { p.EndSessions(func(tok string) bool { return tok == "tok-revoked" }) }},
		{KilledByShutdown, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			p.Shutdown(ctx)
		}},
	} {
		c, err := dial(t, wsURL(srv), bearer("tok-revoked"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		next(t, rec.starts)
		tc.kill()
		if e := next(t, rec.ends); e.Outcome != EndKilled || e.KilledBy != tc.by {
			t.Fatalf("killed session's end %+v, want killed by %q", e, tc.by)
		}
	}
	select {
	case s := <-rec.ends:
		t.Fatalf("a failed start was followed by an end: %+v", s)
	default:
	}
}

// Observers passes each event to every Observer.
func TestObserversFanOut(t *testing.T) {
	a, b := newRecorder(), newRecorder()
	obs := Observers{a, b}
	obs.Refused(&Refusal{Status: 401})
	s := &Session{ID: "x"}
	obs.SessionStart(s)
	obs.SessionEnd(s)
	for _, r := range []*recorder{a, b} {
		if next(t, r.refused).Status != 401 || next(t, r.starts) != s || next(t, r.ends) != s {
			t.Fatal("event not passed on")
		}
	}
}
