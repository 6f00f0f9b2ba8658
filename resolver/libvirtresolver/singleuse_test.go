package libvirtresolver

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// consumeBound is how long another replica may take to stop answering a
// consumed token. Events do it in milliseconds; the replicas of these
// tests resync only hourly, so passing proves the events did it.
const consumeBound = 5 * time.Second

func mustToken(t *testing.T, c *libvirtadmin.Conn, domain string, kind protocols.Kind, index int) (string, libvirtadmin.Console) {
	t.Helper()
	tok, con, err := c.Token(ctxT(t), domain, kind, index)
	if err != nil {
		t.Fatal(err)
	}
	return tok, con
}

func resolvesNow(t *testing.T, r *Resolver, token, what string) {
	t.Helper()
	if _, err := r.Resolve(context.Background(), token); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func notFoundNow(t *testing.T, r *Resolver, token, what string) {
	t.Helper()
	if _, err := r.Resolve(context.Background(), token); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("%s: err = %v, want ErrNotFound", what, err)
	}
}

// TestConsumeAcrossReplicas: two resolvers on one libvirtd act as two
// proxy replicas. A token consumed on one stops resolving there at once
// and on the other as soon as the metadata-change event arrives; the
// fresh token read back through libvirt resolves on both.
func TestConsumeAcrossReplicas(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true})
	a := newResolver(t, d, WithResync(time.Hour), WithConsoleStreams())
	b := newResolver(t, d, WithResync(time.Hour))
	for _, r := range []*Resolver{a, b} {
		if !r.SingleUse() {
			t.Fatal("SingleUse() = false by default, want true")
		}
	}
	var _ resolver.SingleUser = a

	if _, err := c.Enable(ctx, dom.Name, []protocols.Kind{protocols.KindVNC, protocols.KindSerial}, "", false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disable(context.Background(), dom.UUID) })
	metaBefore := metadataOf(t, dom)
	vnc, vncCon := mustToken(t, c, dom.Name, protocols.KindVNC, 0)
	serial, _ := mustToken(t, c, dom.Name, protocols.KindSerial, 0)
	waitFor(t, "vnc token on A", consumeBound, resolvesTo(a, vnc, nil))
	waitFor(t, "vnc token on B", consumeBound, resolvesTo(b, vnc, nil))
	waitFor(t, "serial token on A", consumeBound, resolvesTo(a, serial, nil))

	// Consume the VNC token on A.
	start := time.Now()
	if err := a.Consume(ctx, vnc); err != nil {
		t.Fatalf("Consume on A: %v", err)
	}
	consumeTook := time.Since(start)
	notFoundNow(t, a, vnc, "consumed token on A right after Consume")
	latB := waitFor(t, "consumed token gone on B", consumeBound, failsWith(b, vnc, resolver.ErrNotFound))
	t.Logf("Consume on A took %v; B stopped answering the token %v after it returned (%v after the call)",
		consumeTook, latB, consumeTook+latB)

	fresh, freshCon := mustToken(t, c, dom.Name, protocols.KindVNC, 0)
	if fresh == vnc || freshCon.Secret != vncCon.Secret || len(fresh) != len(vnc) {
		t.Fatalf("after Consume: token changed %v, secret %s -> %s, length %d -> %d",
			fresh != vnc, vncCon.Secret, freshCon.Secret, len(vnc), len(fresh))
	}
	resolvesNow(t, a, fresh, "fresh token on A right after Consume")
	latFresh := waitFor(t, "fresh token on B", consumeBound, resolvesTo(b, fresh, func(tg protocols.Target) bool {
		return tg.Kind == protocols.KindVNC
	}))
	t.Logf("B answered the fresh token %v after it was read back", latFresh)

	// Only that console's token changed; the metadata is unchanged.
	if again, _ := mustToken(t, c, dom.Name, protocols.KindSerial, 0); again != serial {
		t.Error("Consume of the VNC token changed the serial token")
	}
	resolvesNow(t, a, serial, "serial token on A after consuming the VNC token")
	if got := metadataOf(t, dom); got != metaBefore {
		t.Errorf("live metadata changed:\nbefore %s\nafter  %s", metaBefore, got)
	}

	// A used token is dead for every replica.
	for name, r := range map[string]*Resolver{"A": a, "B": b} {
		err := r.Consume(ctx, vnc)
		if !errors.Is(err, resolver.ErrNotFound) {
			t.Errorf("Consume of a consumed token on %s: %v, want ErrNotFound", name, err)
		} else if strings.Contains(err.Error(), vnc) {
			t.Errorf("error contains the token: %v", err)
		}
	}

	// The other way round, with the pty serial token: B cannot serve it
	// (no console streams) but consumes it all the same.
	start = time.Now()
	if err := b.Consume(ctx, serial); err != nil {
		t.Fatalf("Consume of the serial token on B: %v", err)
	}
	consumeTook = time.Since(start)
	lat := waitFor(t, "consumed serial token gone on A", consumeBound, failsWith(a, serial, resolver.ErrNotFound))
	t.Logf("serial: Consume on B took %v; A stopped answering %v after it returned", consumeTook, lat)
	freshSerial, _ := mustToken(t, c, dom.Name, protocols.KindSerial, 0)
	waitFor(t, "fresh serial token on A", consumeBound, resolvesTo(a, freshSerial, func(tg protocols.Target) bool {
		return tg.Dial != nil
	}))
	if _, err := b.Resolve(ctx, freshSerial); !errors.Is(err, ErrStreamOnly) {
		t.Errorf("fresh serial token on B: %v, want ErrStreamOnly", err)
	}
	resolvesNow(t, b, fresh, "fresh VNC token on B after consuming the serial token")
}

func metadataOf(t *testing.T, dom *libvirttest.Domain) string {
	t.Helper()
	return strings.TrimSpace(dom.Virsh(t, "metadata", dom.UUID, domainxml.Namespace, "--live"))
}

// TestConsumeRace: of 8 concurrent Consume calls with one token, exactly
// one succeeds; the others get ErrNotFound.
func TestConsumeRace(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true})
	r := newResolver(t, d, WithResync(time.Hour))
	if _, err := c.Enable(ctx, dom.Name, nil, "", false); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disable(context.Background(), dom.UUID) })

	for range 3 {
		tok, _ := mustToken(t, c, dom.Name, protocols.KindVNC, 0)
		waitFor(t, "token", consumeBound, resolvesTo(r, tok, nil))
		raceConsume(t, r, tok, nil)
	}
}

// raceConsume runs 8 concurrent Consume calls with token, and 20 Resolve
// calls and also (if not nil) alongside; exactly one Consume must succeed,
// the others fail with ErrNotFound, and the token must be dead after.
func raceConsume(t *testing.T, r *Resolver, token string, also func()) {
	t.Helper()
	ctx := context.Background()
	const racers = 8
	errs := make([]error, racers)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range racers {
		wg.Go(func() {
			<-gate
			errs[i] = r.Consume(ctx, token)
		})
	}
	wg.Go(func() {
		<-gate
		for range 20 {
			r.Resolve(ctx, token)
		}
	})
	if also != nil {
		wg.Go(func() { <-gate; also() })
	}
	close(gate)
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, resolver.ErrNotFound):
			t.Errorf("Consume: %v, want nil or ErrNotFound", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent Consume calls succeeded, want exactly 1: %v", wins, racers, errs)
	}
	notFoundNow(t, r, token, "consumed token")
}

// TestReusableTokens: WithReusableTokens turns the policy off.
func TestReusableTokens(t *testing.T) {
	d := libvirttest.Start(t)
	r := newResolver(t, d, WithReusableTokens())
	if r.SingleUse() {
		t.Error("WithReusableTokens: SingleUse() = true")
	}
}

// TestConsumeErrors: unknown tokens, unreachable libvirtd and an ended
// context.
func TestConsumeErrors(t *testing.T) {
	d := libvirttest.Start(t)
	r := newResolver(t, d)
	ctx := ctxT(t)
	for _, tok := range []string{"", "no-such-token-SECRET"} {
		err := r.Consume(ctx, tok)
		if !errors.Is(err, resolver.ErrNotFound) {
			t.Errorf("Consume(%q): %v, want ErrNotFound", tok, err)
		}
		checkOneLine(t, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Consume(cctx, "whatever"); !errors.Is(err, resolver.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("Consume with a cancelled context: %v", err)
	}

	down, err := New([]string{"qemu+unix:///system?socket=/nonexistent/libvirt-sock"}, WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer rcancel()
	down.Ready(rctx)
	err = down.Consume(ctx, "whatever-SECRET")
	if !errors.Is(err, resolver.ErrUnavailable) {
		t.Errorf("Consume with libvirtd unreachable: %v, want ErrUnavailable", err)
	}
	checkOneLine(t, err)
	if strings.Contains(err.Error(), "whatever-SECRET") {
		t.Errorf("error contains the token: %v", err)
	}
}
