package libvirtresolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// These tests run against a real libvirtd (libvirttest.Start) with small
// TCG domains. They are not parallel: one of them restarts libvirtd.

func connect(t *testing.T) (*libvirttest.Daemon, *libvirtadmin.Conn) {
	t.Helper()
	d := libvirttest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := libvirtadmin.Connect(ctx, d.URI)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return d, c
}

func newResolver(t *testing.T, d *libvirttest.Daemon, opts ...Option) *Resolver {
	t.Helper()
	opts = append([]Option{WithBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	r, err := New([]string{d.URI}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every millisecond until it holds, and returns how
// long that took.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < timeout {
		ok, msg := cond()
		if ok {
			return time.Since(start)
		}
		last = msg
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s: not within %v (last: %s)", what, timeout, last)
	return 0
}

func resolvesTo(r *Resolver, token string, want func(protocols.Target) bool) func() (bool, string) {
	return func() (bool, string) {
		got, err := r.Resolve(context.Background(), token)
		if err != nil {
			return false, err.Error()
		}
		return want == nil || want(got), fmt.Sprintf("%+v", got)
	}
}

func failsWith(r *Resolver, token string, target error) func() (bool, string) {
	return func() (bool, string) {
		got, err := r.Resolve(context.Background(), token)
		return errors.Is(err, target), fmt.Sprintf("%+v, %v", got, err)
	}
}

func tokenOf(t *testing.T, cons []libvirtadmin.Console, kind protocols.Kind, index int) libvirtadmin.Console {
	t.Helper()
	for _, c := range cons {
		if c.Kind == kind && c.Index == index {
			return c
		}
	}
	t.Fatalf("no %s %d in %+v", kind, index, cons)
	return libvirtadmin.Console{}
}

// sameTarget compares targets but for their Dial functions, which
// closures make unequal.
func sameTarget(a, b protocols.Target) bool {
	a.Dial, b.Dial = nil, nil
	return reflect.DeepEqual(a, b)
}

func checkOneLine(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error is not one line: %q", err)
	}
	t.Logf("error: %v", err)
}

// TestEnableResolve enables every console of a domain with VNC (with a
// password), SPICE, a pty serial + console and a TCP serial, and resolves
// each token by type and index.
func TestEnableResolve(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, VNCPassword: "s3cret", SPICE: true, TCPSerial: true})
	r := newResolver(t, d, WithConsoleStreams())

	enabled, err := c.Enable(ctx, dom.Name, nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(enabled) != 5 {
		t.Fatalf("enabled %d consoles, want 5 (vnc, spice, serial 0 and 1, console): %+v", len(enabled), enabled)
	}
	t.Cleanup(func() { c.Disable(context.Background(), dom.UUID) })

	// Secrets: one per console, public, persistent, described.
	for _, con := range enabled {
		x := d.Virsh(t, "secret-dumpxml", con.Secret)
		if !strings.Contains(x, "ephemeral='no'") || !strings.Contains(x, "private='no'") ||
			!strings.Contains(x, string(con.Kind)) || !strings.Contains(x, dom.UUID) || strings.Contains(x, "<usage") {
			t.Errorf("secret of %s %d:\n%s", con.Kind, con.Index, x)
		}
	}
	// Metadata live and in the config.
	for _, inactive := range []bool{false, true} {
		x := dom.XML(t, inactive)
		if !strings.Contains(x, domainxml.Namespace) || strings.Count(x, "<lcp:console ") != 5 {
			t.Errorf("metadata (inactive=%v) missing:\n%s", inactive, x)
		}
	}

	cons, err := c.Consoles(ctx, dom.Name, true)
	if err != nil {
		t.Fatal(err)
	}
	vncPort := dom.VNCPort(t)
	checks := []struct {
		kind  protocols.Kind
		index int
		want  func(protocols.Target) error
	}{
		{protocols.KindVNC, 0, func(g protocols.Target) error {
			if g.Address != "127.0.0.1:"+strconv.Itoa(vncPort) || g.Password != "s3cret" || g.Insecure || g.Dial != nil {
				return errors.New("want 127.0.0.1:VNCPORT with the password, secure")
			}
			return nil
		}},
		{protocols.KindSerial, 0, func(g protocols.Target) error {
			if g.Dial == nil || g.Address != "libvirt "+d.URI+" domain "+dom.Name+" serial0" {
				return errors.New("want the console stream of serial0")
			}
			return nil
		}},
		{protocols.KindSerial, 1, func(g protocols.Target) error {
			if g.Dial != nil || g.Address != "127.0.0.1:"+strconv.Itoa(dom.TCPPort) {
				return errors.New("want the TCP chardev")
			}
			return nil
		}},
		{protocols.KindSPICE, 0, func(g protocols.Target) error {
			// libvirttest turns on spice_tls: the TLS port, secure.
			if _, tlsPort := dom.SPICEPorts(t); tlsPort == 0 || g.Address != "127.0.0.1:"+strconv.Itoa(tlsPort) || g.Insecure {
				return errors.New("want 127.0.0.1:TLSPORT, secure")
			}
			return nil
		}},
		{protocols.KindConsole, 0, func(g protocols.Target) error {
			if g.Dial == nil || !strings.HasPrefix(g.Address, "libvirt "+d.URI+" domain "+dom.Name+" ") {
				return errors.New("want a console stream")
			}
			return nil
		}},
	}
	for _, ch := range checks {
		con := tokenOf(t, cons, ch.kind, ch.index)
		if con.Token == "" || !con.Enabled {
			t.Fatalf("%s %d: no token: %+v", ch.kind, ch.index, con)
		}
		got, err := r.Resolve(ctx, con.Token)
		if err != nil {
			t.Errorf("%s %d: %v", ch.kind, ch.index, err)
			continue
		}
		if got.Kind != ch.kind {
			t.Errorf("%s %d: kind %s", ch.kind, ch.index, got.Kind)
		}
		if err := ch.want(got); err != nil {
			t.Errorf("%s %d: got %+v: %v", ch.kind, ch.index, got, err)
		}
		if !sameTarget(got, con.Target) {
			t.Errorf("%s %d: Consoles says %+v, Resolve %+v", ch.kind, ch.index, con.Target, got)
		}
	}
	// SPICE without a TLS port (defaultMode='insecure'), enabled secure:
	// a clear error, never the plain port.
	plainOnly := d.NewDomain(t, libvirttest.DomainOptions{SPICE: true, SPICEPlainOnly: true, NoPTY: true})
	po, err := c.Enable(ctx, plainOnly.Name, nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disable(context.Background(), plainOnly.UUID) })
	poCons, err := c.Consoles(ctx, plainOnly.Name, true)
	if err != nil || len(po) != 1 {
		t.Fatalf("enable plain-only SPICE: %+v, %v", po, err)
	}
	waitFor(t, "spice without a TLS port: a clear error", 5*time.Second, func() (bool, string) {
		_, err := r.Resolve(ctx, tokenOf(t, poCons, protocols.KindSPICE, 0).Token)
		return err != nil && strings.Contains(err.Error(), "no TLS port"), fmt.Sprint(err)
	})
	spice := tokenOf(t, cons, protocols.KindSPICE, 0)

	// Enable again, insecure: same tokens, no new secrets, and the
	// resolver follows the metadata change.
	before := d.Virsh(t, "secret-list")
	again, err := c.Enable(ctx, dom.UUID, nil, "", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, con := range again {
		if old := tokenOf(t, enabled, con.Kind, con.Index); old.Secret != con.Secret {
			t.Errorf("%s %d: enable again changed the secret %s -> %s", con.Kind, con.Index, old.Secret, con.Secret)
		}
	}
	if after := d.Virsh(t, "secret-list"); after != before {
		t.Errorf("enable again changed the secrets:\n%s\n->\n%s", before, after)
	}
	waitFor(t, "spice insecure resolves to the plain port", 5*time.Second, resolvesTo(r, spice.Token, func(g protocols.Target) bool {
		return g.Insecure && g.Kind == protocols.KindSPICE
	}))
	waitFor(t, "serial 1 insecure", 5*time.Second, resolvesTo(r, tokenOf(t, cons, protocols.KindSerial, 1).Token, func(g protocols.Target) bool {
		return g.Insecure
	}))

	// A resolver without console streams refuses pty consoles clearly.
	plain := newResolver(t, d)
	if _, err := plain.Resolve(ctx, tokenOf(t, cons, protocols.KindSerial, 0).Token); !errors.Is(err, ErrStreamOnly) {
		t.Errorf("pty console without streams: err = %v, want ErrStreamOnly", err)
	}
	if _, err := plain.Resolve(ctx, "no-such-token"); !errors.Is(err, resolver.ErrNotFound) {
		t.Errorf("unknown token: err = %v", err)
	}
}

// TestEnableSubsetHost enables only the serial consoles, with a host.
func TestEnableSubsetHost(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, TCPSerial: true, NoPTY: true})
	cons, err := c.Enable(ctx, dom.Name, []protocols.Kind{protocols.KindSerial}, "hv1.example", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Disable(context.Background(), dom.UUID) })
	if len(cons) != 1 || cons[0].Kind != protocols.KindSerial || cons[0].Address != "hv1.example:"+strconv.Itoa(dom.TCPPort) {
		t.Fatalf("enabled %+v", cons)
	}
	all, err := c.Consoles(ctx, dom.UUID, false)
	if err != nil {
		t.Fatal(err)
	}
	if v := tokenOf(t, all, protocols.KindVNC, 0); v.Enabled || v.Token != "" {
		t.Errorf("vnc enabled: %+v", v)
	}
	if s := tokenOf(t, all, protocols.KindSerial, 0); s.Token != "" {
		t.Errorf("token shown without asking: %+v", s)
	}

	// A Resolve that comes right after New, before the first sync, waits
	// for it instead of answering ErrUnavailable: a server listens at
	// once, and its first viewer should not get a 503.
	withToken, err := c.Consoles(ctx, dom.UUID, true)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenOf(t, withToken, protocols.KindSerial, 0).Token
	r, err := New([]string{d.URI})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Resolve(ctx, tok); err != nil || got.Address != "hv1.example:"+strconv.Itoa(dom.TCPPort) {
		t.Errorf("resolve right after New: %+v, %v", got, err)
	}
}

// TestDisableRotate: disable makes tokens unknown and removes secrets;
// rotate replaces token values.
func TestDisableRotate(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true})
	r := newResolver(t, d)
	if _, err := c.Enable(ctx, dom.Name, nil, "", false); err != nil {
		t.Fatal(err)
	}
	cons, err := c.Consoles(ctx, dom.Name, true)
	if err != nil {
		t.Fatal(err)
	}
	old := tokenOf(t, cons, protocols.KindVNC, 0)
	waitFor(t, "vnc token after enable", 5*time.Second, resolvesTo(r, old.Token, nil))

	rotated, err := c.Rotate(ctx, dom.Name)
	if err != nil {
		t.Fatal(err)
	}
	cons, err = c.Consoles(ctx, dom.Name, true)
	if err != nil {
		t.Fatal(err)
	}
	nu := tokenOf(t, cons, protocols.KindVNC, 0)
	if nu.Token == old.Token || nu.Secret != old.Secret || len(rotated) != len(cons) {
		t.Fatalf("rotate: old %+v new %+v", old, nu)
	}
	lat := waitFor(t, "new token after rotate", 5*time.Second, resolvesTo(r, nu.Token, nil))
	waitFor(t, "old token gone after rotate", 5*time.Second, failsWith(r, old.Token, resolver.ErrNotFound))
	t.Logf("rotate took effect after %v", lat)

	if err := c.Disable(ctx, dom.Name); err != nil {
		t.Fatal(err)
	}
	lat = waitFor(t, "token gone after disable", 5*time.Second, failsWith(r, nu.Token, resolver.ErrNotFound))
	t.Logf("disable took effect after %v", lat)
	if d.SecretExists(t, nu.Secret) {
		t.Errorf("secret %s still defined after disable", nu.Secret)
	}
	for _, inactive := range []bool{false, true} {
		if x := dom.XML(t, inactive); strings.Contains(x, domainxml.Namespace) {
			t.Errorf("metadata left (inactive=%v):\n%s", inactive, x)
		}
	}
	if err := c.Disable(ctx, dom.Name); err != nil {
		t.Errorf("disable again: %v", err)
	}
	if _, err := c.Rotate(ctx, dom.Name); !errors.Is(err, libvirtadmin.ErrNotEnabled) {
		t.Errorf("rotate disabled domain: err = %v, want libvirtadmin.ErrNotEnabled", err)
	} else {
		checkOneLine(t, err)
	}
}

// TestLiveMetadataAndStop: metadata set with virsh on a running domain
// takes effect without restarting anything, and a destroyed domain's
// token stops resolving.
func TestLiveMetadataAndStop(t *testing.T) {
	d, _ := connect(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, TCPSerial: true})
	r := newResolver(t, d)
	tok := "tok-" + dom.UUID
	secret := d.Secret(t, tok)

	// Hammer the resolver meanwhile, for the race detector.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r.Resolve(context.Background(), tok)
				r.Resolve(context.Background(), "nope")
				time.Sleep(100 * time.Microsecond)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	dom.SetMetadata(t, fmt.Sprintf(`<console token='%s' type='vnc' port='0' insecure='no'/>`, secret), true)
	lat := waitFor(t, "token after a live metadata change", 5*time.Second, resolvesTo(r, tok, func(g protocols.Target) bool {
		return g.Kind == protocols.KindVNC
	}))
	t.Logf("live metadata change took effect after %v", lat)

	// Point the same token at serial 1 (the TCP chardev).
	dom.SetMetadata(t, fmt.Sprintf(`<console token='%s' type='serial' port='1' insecure='yes' host='127.0.0.2'/>`, secret), true)
	lat = waitFor(t, "token moved to serial 1", 5*time.Second, resolvesTo(r, tok, func(g protocols.Target) bool {
		return g.Kind == protocols.KindSerial && g.Address == "127.0.0.2:"+strconv.Itoa(dom.TCPPort) && g.Insecure
	}))
	t.Logf("second live metadata change took effect after %v", lat)

	// A secret value changed behind our back is caught by the resync.
	r2 := newResolver(t, d, WithResync(200*time.Millisecond))
	waitFor(t, "r2 resolves", 5*time.Second, resolvesTo(r2, tok, nil))
	d.SetSecret(t, secret, tok+"-2")
	waitFor(t, "resync picks up a new secret value", 5*time.Second, resolvesTo(r2, tok+"-2", nil))
	d.SetSecret(t, secret, tok)
	waitFor(t, "token back", 5*time.Second, resolvesTo(r, tok, nil))
	waitFor(t, "token back in r", 5*time.Second, resolvesTo(r, tok, nil))

	// Watch from before the destroy: when does the token stop resolving,
	// and when does the lifecycle event drop it from the table?
	gone := when(func() bool {
		_, err := r.Resolve(context.Background(), tok)
		return errors.Is(err, resolver.ErrNotFound)
	})
	dropped := when(func() bool { return r.tokens(dom.UUID) == 0 })
	start := time.Now()
	dom.Destroy(t)
	end := time.Now()
	var tGone, tDropped time.Time
	select {
	case tGone = <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("token still resolves 5s after virsh destroy returned")
	}
	select {
	case tDropped = <-dropped:
	case <-time.After(5 * time.Second):
		t.Fatal("table entry still there 5s after virsh destroy returned")
	}
	t.Logf("virsh destroy ran for %v (QEMU shutting down); relative to virsh destroy returning, the lifecycle event dropped the token at %+v and Resolve answered not-found at %+v",
		end.Sub(start).Round(time.Millisecond), tDropped.Sub(end).Round(time.Microsecond), tGone.Sub(end).Round(time.Microsecond))
}

// when polls cond every millisecond in the background and sends the time
// it first holds.
func when(cond func() bool) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if cond() {
				ch <- time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return ch
}

// TestSamePortNewDomain: a domain started later on the port of a stopped
// one never answers to the stopped one's token.
func TestSamePortNewDomain(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	r := newResolver(t, d)
	port := 0
	for port < 5900 || port > 65000 {
		port = qemutest.FreePort(t)
	}
	a := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, VNCPort: port, NoPTY: true})
	if _, err := c.Enable(ctx, a.Name, nil, "", false); err != nil {
		t.Fatal(err)
	}
	ca, _ := c.Consoles(ctx, a.Name, true)
	tokA := tokenOf(t, ca, protocols.KindVNC, 0).Token
	waitFor(t, "A's token", 5*time.Second, resolvesTo(r, tokA, func(g protocols.Target) bool {
		return g.Address == "127.0.0.1:"+strconv.Itoa(port)
	}))
	a.Destroy(t)

	b := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, VNCPort: port, NoPTY: true})
	if got := b.VNCPort(t); got != port {
		t.Fatalf("B got port %d, want %d", got, port)
	}
	if _, err := c.Enable(ctx, b.Name, nil, "", false); err != nil {
		t.Fatal(err)
	}
	cb, _ := c.Consoles(ctx, b.Name, true)
	tokB := tokenOf(t, cb, protocols.KindVNC, 0).Token
	waitFor(t, "B's token", 5*time.Second, resolvesTo(r, tokB, func(g protocols.Target) bool {
		return g.Address == "127.0.0.1:"+strconv.Itoa(port)
	}))
	if got, err := r.Resolve(ctx, tokA); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("A's token after B took its port: %+v, %v", got, err)
	}
	// A's token resolves again once A runs again (on another port).
	c.Disable(ctx, b.Name)
	b.Destroy(t)
	a.Start(t)
	waitFor(t, "A's token after A restarted", 5*time.Second, resolvesTo(r, tokA, nil))
	c.Disable(ctx, a.Name)
}

// TestLibvirtdRestart: while libvirtd is down the resolver answers
// ErrUnavailable, and it recovers by itself.
func TestLibvirtdRestart(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, NoPTY: true})
	if _, err := c.Enable(ctx, dom.Name, nil, "", false); err != nil {
		t.Fatal(err)
	}
	cons, _ := c.Consoles(ctx, dom.Name, true)
	tok := tokenOf(t, cons, protocols.KindVNC, 0).Token
	t.Cleanup(func() {
		c2, err := libvirtadmin.Connect(context.Background(), d.URI)
		if err == nil {
			c2.Disable(context.Background(), dom.UUID)
			c2.Close()
		}
	})
	r := newResolver(t, d)
	waitFor(t, "token", 5*time.Second, resolvesTo(r, tok, nil))

	start := time.Now()
	d.Kill(t)
	t.Cleanup(func() { d.Restart(t) })
	killed := time.Since(start)
	lat := waitFor(t, "unavailable while libvirtd is down", 5*time.Second, failsWith(r, tok, resolver.ErrUnavailable))
	_, err := r.Resolve(ctx, "unknown-token")
	if !errors.Is(err, resolver.ErrUnavailable) {
		t.Errorf("unknown token while down: %v, want ErrUnavailable", err)
	}
	checkOneLine(t, err)
	t.Logf("libvirtd killed in %v; resolver unavailable %v after that", killed.Round(time.Millisecond), lat)

	start = time.Now()
	d.Restart(t)
	restarted := time.Since(start)
	lat = waitFor(t, "recovered after restart", 30*time.Second, resolvesTo(r, tok, nil))
	t.Logf("libvirtd restarted in %v; resolver answered again %v after that", restarted.Round(time.Millisecond), lat)

	// Close waits for the watcher and its event forwarders, whose
	// connection go-libvirt ends.
	r.Close()
	if w := workers(); len(w) > 0 {
		t.Errorf("goroutines left after Close:\n%s", strings.Join(w, "\n\n"))
	}
}

// TestRemoteTransports: the admin calls and the resolver over libvirt's
// tls transport (client certificates both ways) and its ssh transport
// (key login, known host key), as toward a remote hypervisor.
func TestRemoteTransports(t *testing.T) {
	d := libvirttest.Start(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, NoPTY: true})
	want := "127.0.0.1:" + strconv.Itoa(dom.VNCPort(t))
	sshd := d.StartSSH(t)
	for _, tc := range []struct{ name, uri string }{
		{"tls", libvirttest.TLSURI},
		{"ssh", sshd.URI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := libvirtadmin.Connect(ctx, tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			t.Logf("connected over %s in %v", tc.name, time.Since(start).Round(time.Microsecond))
			if _, err := c.Enable(ctx, dom.Name, nil, "", false); err != nil {
				t.Fatal(err)
			}
			defer c.Disable(context.Background(), dom.UUID)
			cons, err := c.Consoles(ctx, dom.Name, true)
			if err != nil {
				t.Fatal(err)
			}
			r, err := New([]string{tc.uri})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			start = time.Now()
			got, err := r.Resolve(ctx, tokenOf(t, cons, protocols.KindVNC, 0).Token)
			t.Logf("first resolve over %s (connect, subscribe, sync, answer) in %v", tc.name, time.Since(start).Round(time.Microsecond))
			if err != nil || got.Address != want || got.Insecure {
				t.Fatalf("resolve over %s: %+v, %v; want %s, secure", tc.name, got, err, want)
			}
		})
	}
	// SSH failures a user can fix, each one line: an unknown host key, no
	// known hosts file, a missing key file.
	emptyKH := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(emptyKH, nil, 0o600)
	for _, tc := range []struct{ param, value, want string }{
		{"known_hosts", emptyKH, "is not in " + emptyKH + "; add it"},
		{"known_hosts", "/nonexistent/known_hosts", "no known hosts file /nonexistent/known_hosts"},
		{"keyfile", "/nonexistent/id_ed25519", "/nonexistent/id_ed25519"},
	} {
		u, _ := url.Parse(sshd.URI)
		q := u.Query()
		q.Set(tc.param, tc.value)
		u.RawQuery = q.Encode()
		_, err := libvirtadmin.Connect(ctx, u.String())
		if !errors.Is(err, libvirtapi.ErrUnreachable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ssh with %s=%s: %v, want libvirtapi.ErrUnreachable mentioning %q", tc.param, tc.value, err, tc.want)
		} else {
			checkOneLine(t, err)
		}
	}

	// Closing the libvirt connections closed their SSH connections: no
	// process is left serving one on the "hypervisor".
	waitFor(t, "SSH connections closed", 10*time.Second, func() (bool, string) {
		n := sshd.Processes()
		return n == 0, fmt.Sprintf("%d sshd processes serving connections", n)
	})
}

// TestErrors: enable on a domain without consoles, an unknown domain and
// an unreachable libvirt each fail with one clear line.
func TestErrors(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	bare := d.NewDomain(t, libvirttest.DomainOptions{NoPTY: true, NoStart: true})
	_, err := c.Enable(ctx, bare.Name, nil, "", false)
	if !errors.Is(err, libvirtadmin.ErrNoConsoles) {
		t.Errorf("no consoles: %v", err)
	}
	checkOneLine(t, err)
	vncOnly := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, NoPTY: true, NoStart: true})
	_, err = c.Enable(ctx, vncOnly.Name, []protocols.Kind{protocols.KindSPICE}, "", false)
	if !errors.Is(err, libvirtadmin.ErrNoConsoles) {
		t.Errorf("no spice: %v", err)
	}
	checkOneLine(t, err)
	// Enabling a stopped persistent domain writes its config only.
	if _, err := c.Enable(ctx, vncOnly.UUID, nil, "", false); err != nil {
		t.Errorf("enable stopped domain: %v", err)
	} else if x := vncOnly.XML(t, true); !strings.Contains(x, domainxml.Namespace) {
		t.Errorf("config has no metadata:\n%s", x)
	}
	if err := c.Disable(ctx, vncOnly.Name); err != nil {
		t.Error(err)
	}

	for _, name := range []string{"no-such-domain-xyz", "00000000-0000-0000-0000-000000000001", "99999"} {
		_, err = c.Enable(ctx, name, nil, "", false)
		if !errors.Is(err, libvirtapi.ErrDomainNotFound) {
			t.Errorf("unknown domain %s: %v", name, err)
		}
		checkOneLine(t, err)
	}
	if _, err := c.Consoles(ctx, "no-such-domain-xyz", false); !errors.Is(err, libvirtapi.ErrDomainNotFound) {
		t.Errorf("consoles of unknown domain: %v", err)
	}

	for _, uri := range []string{"qemu+unix:///system?socket=/nonexistent/libvirt-sock", "qemu+tcp://127.0.0.1:1/system"} {
		_, err := libvirtadmin.Connect(ctx, uri)
		if !errors.Is(err, libvirtapi.ErrUnreachable) || !errors.Is(err, resolver.ErrUnavailable) {
			t.Errorf("%s: %v", uri, err)
		}
		checkOneLine(t, err)
	}
	// TLS transport without client credentials, and with a client
	// certificate libvirtd does not trust: one line that says what to do.
	noPKI := t.TempDir()
	otherCA := t.TempDir()
	if err := tlscreds.Create(otherCA, []string{"127.0.0.1"}, tlscreds.CreateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(filepath.Join(libvirttest.ClientPKIDir, "cacert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"client-cert.pem": "clientcert.pem", "client-key.pem": "clientkey.pem"} {
		b, err := os.ReadFile(filepath.Join(otherCA, src))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(otherCA, dst), b, 0o600)
	}
	os.WriteFile(filepath.Join(otherCA, "cacert.pem"), ca, 0o644)
	for _, tc := range []struct{ uri, want string }{
		{"qemu+tls://127.0.0.1/system?pkipath=" + noPKI, "clientcert.pem"},
		{"qemu+tls://127.0.0.1/system?pkipath=" + otherCA, "does not accept clientcert.pem"},
	} {
		_, err := libvirtadmin.Connect(ctx, tc.uri)
		if !errors.Is(err, libvirtapi.ErrUnreachable) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want libvirtapi.ErrUnreachable mentioning %q", tc.uri, err, tc.want)
		}
		if err != nil {
			checkOneLine(t, err)
		}
	}
	if _, err := libvirtadmin.Connect(ctx, "qemu+bogus://x/system"); err == nil {
		t.Error("bogus transport accepted")
	} else {
		checkOneLine(t, err)
	}
	r, err := New([]string{"qemu+unix:///system?socket=/nonexistent/libvirt-sock"}, WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := r.Ready(rctx); !errors.Is(err, resolver.ErrUnavailable) {
		t.Errorf("Ready with an unreachable URI: %v", err)
	}
	_, err = r.Resolve(ctx, "whatever")
	if !errors.Is(err, resolver.ErrUnavailable) {
		t.Errorf("resolve with an unreachable URI: %v", err)
	}
	checkOneLine(t, err)
}

// faultConn makes libvirtd reject DomainSetMetadata calls by giving them
// flags it does not know, the way a failure of the last Enable step looks.
type faultConn struct{ net.Conn }

func (c faultConn) Write(p []byte) (int, error) {
	for off := 0; off+28 <= len(p); {
		n := int(binary.BigEndian.Uint32(p[off:]))
		if n < 28 || off+n > len(p) {
			break
		}
		proc, typ := binary.BigEndian.Uint32(p[off+12:]), binary.BigEndian.Uint32(p[off+16:])
		if proc == 264 && typ == 0 { // REMOTE_PROC_DOMAIN_SET_METADATA call
			q := append([]byte(nil), p...)
			binary.BigEndian.PutUint32(q[off+n-4:], 0x8000)
			p = q
		}
		off += n
	}
	return c.Conn.Write(p)
}

// TestEnableRollback: when writing the metadata fails, the secrets Enable
// created are removed again.
func TestEnableRollback(t *testing.T) {
	d := libvirttest.Start(t)
	ctx := ctxT(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, TCPSerial: true, NoStart: true})
	c, err := libvirtadmin.Connect(ctx, d.URI, libvirtadmin.WithDialer(transport.DialerFunc(func() (net.Conn, error) {
		conn, err := net.Dial("unix", d.Socket)
		if err != nil {
			return nil, err
		}
		return faultConn{conn}, nil
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	before := d.Virsh(t, "secret-list")
	_, err = c.Enable(ctx, dom.Name, nil, "", false)
	if err == nil {
		t.Fatal("enable succeeded although the metadata could not be written")
	}
	checkOneLine(t, err)
	if after := d.Virsh(t, "secret-list"); after != before {
		t.Errorf("secrets left behind:\n%s\n->\n%s", before, after)
	}
	if x := dom.XML(t, true); strings.Contains(x, domainxml.Namespace) {
		t.Errorf("metadata written:\n%s", x)
	}
}
