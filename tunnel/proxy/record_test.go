package proxy

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// fakeRecorder records in memory; failOpen and failWrite make it fail.
type fakeRecorder struct {
	policy    protocols.RecordPolicy
	failOpen  error
	failWrite error

	mu   sync.Mutex
	recs []*fakeRecording
}

func (f *fakeRecorder) Policy(s *Session) protocols.RecordPolicy {
	if s.Target.Record != protocols.RecordDefault {
		return s.Target.Record
	}
	return f.policy
}

func (f *fakeRecorder) Open(s *Session) (Recording, error) {
	if f.failOpen != nil {
		return nil, f.failOpen
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fakeRecording{f: f, name: "rec-" + s.ID, closed: make(chan *Session, 1)}
	f.recs = append(f.recs, r)
	return r, nil
}

func (f *fakeRecorder) rec(i int) *fakeRecording {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs[i]
}

type fakeRecording struct {
	f    *fakeRecorder
	name string

	mu             sync.Mutex
	out, in, marks strings.Builder
	closed         chan *Session
}

func (r *fakeRecording) add(b *strings.Builder, p []byte) error {
	r.f.mu.Lock()
	fail := r.f.failWrite
	r.f.mu.Unlock()
	if fail != nil {
		return fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.Write(p)
	return nil
}

func (r *fakeRecording) Output(p []byte) error  { return r.add(&r.out, p) }
func (r *fakeRecording) Input(p []byte) error   { return r.add(&r.in, p) }
func (r *fakeRecording) Marker(l string) error  { return r.add(&r.marks, []byte(l+"\n")) }
func (r *fakeRecording) Name() string           { return r.name }
func (r *fakeRecording) Close(s *Session) error { r.closed <- s; return nil }

func (r *fakeRecording) get(b *strings.Builder) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return b.String()
}

// TestRecordSharedSerial: each viewer of a shared text console has its
// recording: what it was sent (the scrollback first), what it typed, and
// markers for the other viewers joining and leaving; it is closed with
// the session's end, and the Session names it.
func TestRecordSharedSerial(t *testing.T) {
	_, addr := startChardev(t, 0)
	p, srv, _ := newProxy(t, map[string]resolver.Console{"ctl": {Type: "serial", Address: addr, Insecure: true}})
	rec := &fakeRecorder{policy: protocols.RecordOn}
	p.Recorder = rec
	var started []*Session
	var mu sync.Mutex
	p.Observer = observerFunc(func(s *Session) { mu.Lock(); started = append(started, s); mu.Unlock() })

	a, err := dial(t, wsURL(srv), bearer("ctl"))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("1"))
	readUntil(t, a, "<1>")
	b, err := dial(t, wsURL(srv), bearer("ctl"))
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, b, "<1>")
	b.Close()
	ra, rb := rec.rec(0), rec.rec(1)
	sb := <-rb.closed
	if sb.Outcome == "" || rb.get(&rb.out) != "<1>" || rb.get(&rb.in) != "" {
		t.Fatalf("b's recording: outcome %q, out %q, in %q", sb.Outcome, rb.get(&rb.out), rb.get(&rb.in))
	}
	a.Close()
	sa := <-ra.closed
	marks := ra.get(&ra.marks)
	if ra.get(&ra.out) != "<1>" || ra.get(&ra.in) != "1" || !strings.Contains(marks, "viewer joined: session "+sb.ID) ||
		!strings.Contains(marks, "viewer left: session "+sb.ID) || sa.Recording != ra.name {
		t.Fatalf("a's recording: out %q, in %q, markers %q, Session.Recording %q", ra.get(&ra.out), ra.get(&ra.in), marks, sa.Recording)
	}
}

// observerFunc is an Observer that hears of session starts only.
type observerFunc func(*Session)

func (f observerFunc) Refused(*Refusal)        {}
func (f observerFunc) SessionStart(s *Session) { f(s) }
func (f observerFunc) SessionEnd(*Session)     {}

// TestRecordPolicyOpen: a recording that cannot be opened refuses a
// required console (503) and lets an "on" one go on, with NotRecorded
// and a warning; without a Recorder a required console is refused too.
func TestRecordPolicyOpen(t *testing.T) {
	echo := echoServer(t)
	p, srv, logs := newProxy(t, map[string]resolver.Console{
		"req": {Type: "serial", Address: echo, Insecure: true, Record: "required"},
		"on":  {Type: "serial", Address: echo, Insecure: true, Record: "on"},
	})
	p.Limiter = nil
	refused := func(tok, want string) {
		t.Helper()
		_, err := dial(t, wsURL(srv), bearer(tok))
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !strings.Contains(he.Reason, want) {
			t.Fatalf("%s: %v, want 503 %q", tok, err, want)
		}
	}
	refused("req", "must be recorded")
	p.Recorder = &fakeRecorder{failOpen: errors.New("disk full at /secret/path")}
	refused("req", "must be recorded")
	var he *wsconn.HandshakeError
	if _, err := dial(t, wsURL(srv), bearer("req")); errors.As(err, &he) && strings.Contains(he.Reason, "/secret/path") {
		t.Fatalf("the refusal tells the client the proxy's paths: %q", he.Reason)
	}

	var got *Session
	done := make(chan struct{})
	p.Observer = observerFunc(func(s *Session) { got = s; close(done) })
	c, err := dial(t, wsURL(srv), bearer("on"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	readUntil(t, c, "x")
	<-done
	if got.Recording != "" || !strings.Contains(got.NotRecorded, "disk full") || !strings.Contains(logs.String(), "session not recorded") {
		t.Fatalf("Recording %q, NotRecorded %q; log:\n%s", got.Recording, got.NotRecorded, logs.String())
	}
}

// TestRecordWriteFails: a recording that fails mid-session ends it with
// 1011 "session recording failed: …", shared or not.
func TestRecordWriteFails(t *testing.T) {
	for _, shared := range []bool{true, false} {
		echo := echoServer(t)
		p, srv, _ := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: echo, Insecure: true}})
		p.NoSerialSharing = !shared
		rec := &fakeRecorder{policy: protocols.RecordRequired}
		p.Recorder = rec
		c, err := dial(t, wsURL(srv), bearer("t"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("a"))
		readUntil(t, c, "a")
		rec.mu.Lock()
		rec.failWrite = errors.New("disk full")
		rec.mu.Unlock()
		c.Write([]byte("b"))
		_, ce := readEnd(t, c)
		if ce == nil || ce.Code != wsconn.CloseInternalError || ce.Reason != "session recording failed: disk full" {
			t.Fatalf("shared %v: close %+v, want 1011 session recording failed: disk full", shared, ce)
		}
		select {
		case <-rec.rec(0).closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("shared %v: the recording was not closed", shared)
		}
	}
}
