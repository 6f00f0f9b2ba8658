package libvirtresolver

import (
	"context"
	"errors"
	"testing"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
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
	c   *Conn
	dom libvirt.Domain
}

// newFake starts a fake hypervisor with one running domain, "web", and an
// admin connection to it.
func newFake(t *testing.T) *fakeEnv {
	t.Helper()
	h := libvirtfake.New()
	dom := h.Start(h.Define("web", fakeDevices))
	c, err := Connect(context.Background(), fakeURI, WithConnector(h.Connect))
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
	if g, err := r.Resolve(ctx, serial); err != nil || g.Network != Network {
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
	if n := r.tokens(uuidString(f.dom.UUID)); n != 0 {
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
