package libvirtresolver

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtfake"
)

// These tests run the resolver and the admin operations against
// libvirtfake: no libvirtd, milliseconds each. The tests in
// libvirt_test.go prove the same against a real one.

// fakeDevices: VNC, a pty serial (console stream) and a TLS TCP serial.
const fakeDevices = `<graphics type='vnc' port='5901' listen='127.0.0.1'/>` +
	`<serial type='pty'><target port='0'/><alias name='serial0'/></serial>` +
	`<serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555' tls='yes'/><alias name='serial1'/></serial>`

const fakeURI = "qemu:///system"

type fakeEnv struct {
	h   *libvirtfake.Hypervisor
	c   *libvirtadmin.Conn
	dom libvirt.Domain
}

// newFake starts a fake hypervisor with one running domain, "web", and an
// admin connection to it.
func newFake(t *testing.T) *fakeEnv {
	t.Helper()
	h := libvirtfake.New()
	dom := h.Start(h.Define("web", fakeDevices))
	c, err := libvirtadmin.Connect(context.Background(), fakeURI, libvirtadmin.WithConnector(h.Connect))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &fakeEnv{h: h, c: c, dom: dom}
}

// resolver starts a resolver on the fake and waits for its first sync.
func (f *fakeEnv) resolver(t *testing.T, opts ...Option) *Resolver {
	t.Helper()
	opts = append([]Option{WithConnector(f.h.Connect), WithBackoff(time.Millisecond, 10*time.Millisecond), WithResync(0)}, opts...)
	r, err := New([]string{fakeURI}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// enable enables every console of the domain and returns the token of
// kind 0.
func (f *fakeEnv) enable(t *testing.T, kind protocols.Kind) string {
	t.Helper()
	if _, err := f.c.Enable(context.Background(), "web", nil, "", false); err != nil {
		t.Fatal(err)
	}
	return f.token(t, kind)
}

func (f *fakeEnv) token(t *testing.T, kind protocols.Kind) string {
	t.Helper()
	tok, _, err := f.c.Token(context.Background(), "web", kind, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestFakeResolve: tokens of each console kind resolve to their targets,
// follow a rotate and a disable, and stop when the domain stops.
func TestFakeResolve(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t, WithConsoleStreams())
	vnc := f.enable(t, protocols.KindVNC)
	serial := f.token(t, protocols.KindSerial)
	ctx := context.Background()

	waitFor(t, "vnc token", time.Second, resolvesTo(r, vnc, func(g protocols.Target) bool {
		return g.Kind == protocols.KindVNC && g.Address == "127.0.0.1:5901" && !g.Insecure
	}))
	if g, err := r.Resolve(ctx, serial); err != nil || g.Dial == nil || g.Address != "libvirt qemu:///system domain web serial0" {
		t.Errorf("pty serial: %+v, %v", g, err)
	}
	tcp, _, err := f.c.Token(ctx, "web", protocols.KindSerial, 1)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := r.Resolve(ctx, tcp); err != nil || g.Address != "127.0.0.1:4555" {
		t.Errorf("tcp serial: %+v, %v", g, err)
	}
	plain := f.resolver(t)
	if _, err := plain.Resolve(ctx, serial); !errors.Is(err, ErrStreamOnly) {
		t.Errorf("pty serial without streams: %v, want ErrStreamOnly", err)
	}

	if _, err := f.c.Rotate(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	rotated := f.token(t, protocols.KindVNC)
	waitFor(t, "old token gone after rotate", time.Second, failsWith(r, vnc, resolver.ErrNotFound))
	waitFor(t, "new token after rotate", time.Second, resolvesTo(r, rotated, nil))

	f.h.Destroy(f.dom)
	waitFor(t, "token gone after destroy", time.Second, failsWith(r, rotated, resolver.ErrNotFound))
	if n := r.tokens(libvirtapi.UUIDString(f.dom.UUID)); n != 0 {
		t.Errorf("%d tokens of a stopped domain in the table", n)
	}
	f.dom = f.h.Start(f.dom)
	waitFor(t, "token back after start", time.Second, resolvesTo(r, rotated, nil))

	if err := f.c.Disable(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "token gone after disable", time.Second, failsWith(r, rotated, resolver.ErrNotFound))
	if n := f.h.Secrets(); n != 0 {
		t.Errorf("%d secrets left after disable", n)
	}
}

// blockOnce makes the first call of method block until release is
// closed; entered is closed when it arrives. Later calls pass.
func blockOnce(h *libvirtfake.Hypervisor, method string) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	h.SetHook(func(m string) error {
		if m == method && first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		return nil
	})
	return entered, release
}

// consumeBlocked starts consuming token and returns once the Consume is
// blocked in SecretSetValue, having taken the token; closing release lets
// it go on, and done then gives its result.
func (f *fakeEnv) consumeBlocked(t *testing.T, r *Resolver, token string) (done <-chan error, release chan<- struct{}) {
	t.Helper()
	waitFor(t, "token", time.Second, resolvesTo(r, token, nil))
	entered, rel := blockOnce(f.h, "SecretSetValue")
	ch := make(chan error, 1)
	go func() { ch <- r.Consume(context.Background(), token) }()
	select {
	case <-entered:
	case err := <-ch:
		t.Fatalf("Consume ended before setting the secret: %v", err)
	}
	return ch, rel
}

// TestFakeConsumeRace: of 8 concurrent Consume calls with one token,
// exactly one succeeds, while Resolve calls and the events of enable,
// device changes and other consumes run alongside; afterwards the
// consumed token is dead and the fresh one resolves.
func TestFakeConsumeRace(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	// Calls yield, so that racers interleave inside consume too.
	f.h.SetHook(func(string) error { runtime.Gosched(); return nil })
	for round := range 5 {
		waitFor(t, "token", time.Second, resolvesTo(r, tok, nil))
		raceConsume(t, r, tok, func() {
			// Metadata-change events: enable again rewrites the metadata.
			f.c.Enable(context.Background(), "web", nil, "", false)
		})
		fresh := f.token(t, protocols.KindVNC)
		if fresh == tok {
			t.Fatalf("round %d: Consume did not change the token", round)
		}
		tok = fresh
	}
}

func failsWithNow(t *testing.T, r *Resolver, token string, want error) {
	t.Helper()
	if g, err := r.Resolve(context.Background(), token); !errors.Is(err, want) {
		t.Fatalf("Resolve: %+v, %v; want %v", g, err, want)
	}
}

// TestFakeConsumeAcrossReplicas: a token consumed on one of two resolvers
// stops resolving there at once and on the other with the metadata-change
// event; the fresh token resolves on both; the metadata is unchanged; a
// consumed token cannot be consumed again on either.
func TestFakeConsumeAcrossReplicas(t *testing.T) {
	f := newFake(t)
	a, b := f.resolver(t), f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	serial := f.token(t, protocols.KindSerial)
	before := f.h.Metadata(f.dom, domainxml.Namespace, true)
	waitFor(t, "token on A", time.Second, resolvesTo(a, tok, nil))
	waitFor(t, "token on B", time.Second, resolvesTo(b, tok, nil))

	if err := a.Consume(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	failsWithNow(t, a, tok, resolver.ErrNotFound)
	waitFor(t, "consumed token gone on B", time.Second, failsWith(b, tok, resolver.ErrNotFound))
	fresh := f.token(t, protocols.KindVNC)
	resolvesNow(t, a, fresh, "fresh token on A")
	waitFor(t, "fresh token on B", time.Second, resolvesTo(b, fresh, nil))
	if got := f.token(t, protocols.KindSerial); got != serial {
		t.Error("consuming the VNC token changed the serial token")
	}
	if got := f.h.Metadata(f.dom, domainxml.Namespace, true); got != before {
		t.Errorf("metadata changed:\n%s\n%s", before, got)
	}
	for name, r := range map[string]*Resolver{"A": a, "B": b} {
		err := r.Consume(context.Background(), tok)
		if !errors.Is(err, resolver.ErrNotFound) || strings.Contains(err.Error(), tok) {
			t.Errorf("consume again on %s: %v", name, err)
		}
	}
}

// TestFakeRotateMidConsume: events that land between Consume's taking
// the token and setting the secret's new value do not put the consumed
// token back, and an admin rotate there leaves the table with the
// secret's final value: neither the consumed nor the intermediate token
// resolves.
func TestFakeRotateMidConsume(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	done, release := f.consumeBlocked(t, r, tok)
	failsWithNow(t, r, tok, resolver.ErrNotFound) // taken before the new value is set
	// A reload now would read the old value: it must wait for Consume.
	if _, err := f.c.Enable(context.Background(), "web", nil, "", false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	failsWithNow(t, r, tok, resolver.ErrNotFound)
	if _, err := f.c.Rotate(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	rotated := f.token(t, protocols.KindVNC)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	final := f.token(t, protocols.KindVNC)
	if final == rotated {
		t.Fatal("Consume's value did not land after the rotate")
	}
	waitFor(t, "final token", time.Second, resolvesTo(r, final, nil))
	failsWithNow(t, r, tok, resolver.ErrNotFound)
	failsWithNow(t, r, rotated, resolver.ErrNotFound)
}

// TestFakeStopMidConsume: a domain that stops while Consume sets its
// secret's new value: the consume succeeds, and neither the old nor the
// new token resolves once the stop event is in.
func TestFakeStopMidConsume(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	done, release := f.consumeBlocked(t, r, tok)
	f.h.Destroy(f.dom)
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Consume of a token whose domain stopped meanwhile: %v", err)
	}
	fresh := f.token(t, protocols.KindVNC)
	// Verify refuses the fresh token even before the stop event is in.
	failsWithNow(t, r, fresh, resolver.ErrNotFound)
	failsWithNow(t, r, tok, resolver.ErrNotFound)
	waitFor(t, "table emptied", time.Second, func() (bool, string) {
		n := r.tokens(libvirtapi.UUIDString(f.dom.UUID))
		return n == 0, fmt.Sprint(n, " tokens")
	})
	// The domain runs again: its fresh token with it.
	f.dom = f.h.Start(f.dom)
	waitFor(t, "fresh token after restart", time.Second, resolvesTo(r, fresh, nil))
}

// TestFakeVerify: without events, Resolve still checks that the token's
// domain is the same running instance: a restarted domain is re-read, a
// stopped or vanished one is dropped, and a check that outlasts the
// caller's context ends with it.
func TestFakeVerify(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	waitFor(t, "token", time.Second, resolvesTo(r, tok, nil))
	f.h.Quiet(true)

	f.h.Destroy(f.dom)
	f.dom = f.h.Start(f.dom)
	resolvesNow(t, r, tok, "token of the restarted domain")

	f.h.Destroy(f.dom)
	failsWithNow(t, r, tok, resolver.ErrNotFound)
	if n := r.tokens(libvirtapi.UUIDString(f.dom.UUID)); n != 0 {
		t.Errorf("%d tokens of the stopped domain left", n)
	}

	f.dom = f.h.Start(f.dom)
	r2 := f.resolver(t)
	resolvesNow(t, r2, tok, "token after a quiet start")
	f.h.Destroy(f.dom)
	f.h.Undefine(f.dom)
	failsWithNow(t, r2, tok, resolver.ErrNotFound)
	if n := r2.tokens(libvirtapi.UUIDString(f.dom.UUID)); n != 0 {
		t.Errorf("%d tokens of the undefined domain left", n)
	}

	// A lookup that hangs: Resolve ends with its context.
	g := newFake(t)
	r3 := g.resolver(t)
	tok3 := g.enable(t, protocols.KindVNC)
	waitFor(t, "token", time.Second, resolvesTo(r3, tok3, nil))
	entered, release := blockOnce(g.h, "DomainLookupByUUID")
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-entered; cancel() }()
	if _, err := r3.Resolve(ctx, tok3); !errors.Is(err, resolver.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve whose check outlasts its context: %v", err)
	}
}

// TestFakeReconnect: while libvirtd is away the resolver answers
// ErrUnavailable (for unknown tokens too, and Consume); when it is back
// the resolver re-reads everything, including a secret value changed
// meanwhile.
func TestFakeReconnect(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	_, con, err := f.c.Token(context.Background(), "web", protocols.KindVNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	secret, _ := libvirtapi.ParseUUID(con.Secret)
	waitFor(t, "token", time.Second, resolvesTo(r, tok, nil))

	f.h.Refuse(errors.New("connection refused"))
	f.h.CutAll()
	// Once the resolver has noticed (a lookup may notice first).
	waitFor(t, "unavailable while down", time.Second, failsWith(r, "unknown", resolver.ErrUnavailable))
	failsWithNow(t, r, tok, resolver.ErrUnavailable)
	if err := r.Consume(context.Background(), tok); !errors.Is(err, resolver.ErrUnavailable) {
		t.Errorf("Consume while down: %v", err)
	}
	f.h.SetSecretValue(secret, "changed-while-down")

	f.h.Refuse(nil)
	waitFor(t, "new value after reconnect", time.Second, resolvesTo(r, "changed-while-down", nil))
	failsWithNow(t, r, tok, resolver.ErrNotFound)
}

// TestFakeResync: a secret value changed behind the resolver's back (no
// event) is picked up by the periodic resync.
func TestFakeResync(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t, WithResync(20*time.Millisecond))
	tok := f.enable(t, protocols.KindVNC)
	_, con, _ := f.c.Token(context.Background(), "web", protocols.KindVNC, 0)
	secret, _ := libvirtapi.ParseUUID(con.Secret)
	waitFor(t, "token", time.Second, resolvesTo(r, tok, nil))
	f.h.SetSecretValue(secret, "behind-its-back")
	waitFor(t, "resync", time.Second, resolvesTo(r, "behind-its-back", nil))
}

// TestFakeFirstSync: a Resolve right after New waits for the first sync
// instead of answering ErrUnavailable.
func TestFakeFirstSync(t *testing.T) {
	f := newFake(t)
	tok := f.enable(t, protocols.KindVNC)
	f.h.SetHook(func(m string) error {
		if m == "ConnectListAllDomains" {
			time.Sleep(20 * time.Millisecond)
		}
		return nil
	})
	r, err := New([]string{fakeURI}, WithConnector(f.h.Connect))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	resolvesNow(t, r, tok, "resolve right after New")
}

// TestFakeConsumeErrors: unknown tokens and an ended context; errors
// never contain the token.
func TestFakeConsumeErrors(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	if !r.SingleUse() {
		t.Error("SingleUse() = false by default")
	}
	if f.resolver(t, WithReusableTokens()).SingleUse() {
		t.Error("WithReusableTokens: SingleUse() = true")
	}
	for _, tok := range []string{"", "no-such-token-SECRET"} {
		err := r.Consume(context.Background(), tok)
		if !errors.Is(err, resolver.ErrNotFound) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Consume(%q): %v", tok, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.Consume(ctx, "x"); !errors.Is(err, resolver.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Consume with a cancelled context: %v", err)
	}
}

// workers returns the stacks of the goroutines that run this module's
// resolver code, tests' own goroutines aside.
func workers() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "virtconsole/resolver/libvirtresolver") && !strings.Contains(g, "_test.go") {
			out = append(out, g)
		}
	}
	return out
}

// TestFakeCloseWaits: a Consume and a Resolve whose contexts ended while
// their libvirt calls hang leave those calls to workers; Close returns
// only when they are done, and then no goroutine of the resolver is left.
func TestFakeCloseWaits(t *testing.T) {
	if w := workers(); len(w) > 0 {
		t.Fatalf("goroutines left by earlier tests:\n%s", strings.Join(w, "\n\n"))
	}
	for _, method := range []string{"SecretSetValue", "DomainLookupByUUID"} {
		t.Run(method, func(t *testing.T) {
			f := newFake(t)
			r := f.resolver(t)
			tok := f.enable(t, protocols.KindVNC)
			waitFor(t, "token", time.Second, resolvesTo(r, tok, nil))
			entered, release := blockOnce(f.h, method)
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-entered; cancel() }()
			var err error
			if method == "SecretSetValue" {
				err = r.Consume(ctx, tok)
			} else {
				_, err = r.Resolve(ctx, tok)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("call whose context ended: %v", err)
			}

			closed := make(chan struct{})
			go func() { r.Close(); close(closed) }()
			select {
			case <-closed:
				t.Fatal("Close returned while a worker was still in a libvirt call")
			case <-time.After(20 * time.Millisecond):
			}
			close(release)
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close did not return after the call ended")
			}
			if w := workers(); len(w) > 0 {
				t.Fatalf("goroutines left after Close:\n%s", strings.Join(w, "\n\n"))
			}
			if err := r.Consume(context.Background(), tok); !errors.Is(err, resolver.ErrUnavailable) {
				t.Errorf("Consume after Close: %v", err)
			}
		})
	}
}

// TestFakeRecordPolicy: a console's record attribute in the metadata
// becomes its target's recording policy; a bad one leaves the console
// unserved (it may have meant required); re-enabling keeps it.
func TestFakeRecordPolicy(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	vnc := f.enable(t, protocols.KindVNC)
	waitFor(t, "vnc token", time.Second, resolvesTo(r, vnc, func(g protocols.Target) bool { return g.Record == protocols.RecordDefault }))
	l, err := f.h.Connect(context.Background(), fakeURI)
	if err != nil {
		t.Fatal(err)
	}
	// setMeta rewrites the metadata, live and in the config, with edit.
	setMeta := func(edit func(string) string) {
		t.Helper()
		meta := edit(f.h.Metadata(f.dom, domainxml.Namespace, true))
		for _, flags := range []libvirt.DomainModificationImpact{libvirt.DomainAffectLive, libvirt.DomainAffectConfig} {
			if err := l.DomainSetMetadata(f.dom, int32(libvirt.DomainMetadataElement), libvirt.OptString{meta},
				libvirt.OptString{domainxml.MetadataKey}, libvirt.OptString{domainxml.Namespace}, flags); err != nil {
				t.Fatal(err)
			}
		}
	}
	setMeta(func(m string) string {
		return strings.NewReplacer(`type="vnc"`, `type="vnc" record="required"`, `type='vnc'`, `type='vnc' record='required'`).Replace(m)
	})
	waitFor(t, "record required", time.Second, resolvesTo(r, vnc, func(g protocols.Target) bool { return g.Record == protocols.RecordRequired }))
	if _, err := f.c.Enable(context.Background(), "web", nil, "", false); err != nil {
		t.Fatal(err)
	}
	if meta := f.h.Metadata(f.dom, domainxml.Namespace, true); !strings.Contains(meta, "required") {
		t.Fatalf("enable dropped the record attribute: %q", meta)
	}
	setMeta(func(m string) string { return strings.Replace(m, "required", "always", 1) })
	waitFor(t, "a bad record leaves the console unserved", time.Second, failsWith(r, vnc, resolver.ErrNotFound))
}

// TestFakeConsumeSpentElsewhere: a token another replica has spent (its
// secret has a new value) that this resolver has not heard of yet (no
// event: WithResync(0)) is not consumed again: Consume re-reads the secret
// before rotating it and answers ErrNotFound, leaving the secret alone.
func TestFakeConsumeSpentElsewhere(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t)
	tok := f.enable(t, protocols.KindVNC)
	_, con, _ := f.c.Token(context.Background(), "web", protocols.KindVNC, 0)
	secret, _ := libvirtapi.ParseUUID(con.Secret)
	waitFor(t, "token", time.Second, resolvesTo(r, tok, nil))
	f.h.SetSecretValue(secret, "the-other-replicas-fresh-token")
	if err := r.Consume(context.Background(), tok); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("Consume of a token spent elsewhere: %v, want ErrNotFound", err)
	}
	if got := f.token(t, protocols.KindVNC); got != "the-other-replicas-fresh-token" {
		t.Fatalf("the secret was rotated again: %q", got)
	}
}
