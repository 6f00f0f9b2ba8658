package libvirtresolver

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// TestFakeResolveConsole: a share link's console, named by its domain's
// name or UUID, kind and number, resolves as the console's token does,
// consumes nothing, and is not found once the consoles are disabled.
func TestFakeResolveConsole(t *testing.T) {
	f := newFake(t)
	r := f.resolver(t, WithConsoleStreams())
	vnc := f.enable(t, protocols.KindVNC)
	ctx := context.Background()
	waitFor(t, "vnc token", time.Second, resolvesTo(r, vnc, nil))

	for _, dom := range []string{"web", libvirtapi.UUIDString(f.dom.UUID)} {
		if g, err := r.ResolveConsole(ctx, dom, protocols.KindVNC, 0); err != nil || g.Kind != protocols.KindVNC || g.Address != "127.0.0.1:5901" {
			t.Errorf("%s vnc 0: %+v, %v", dom, g, err)
		}
	}
	if g, err := r.ResolveConsole(ctx, "web", protocols.KindSerial, 1); err != nil || g.Address != "127.0.0.1:4555" {
		t.Errorf("web serial 1: %+v, %v", g, err)
	}
	for _, c := range []struct {
		dom   string
		kind  protocols.Kind
		index int
	}{{"db", protocols.KindVNC, 0}, {"web", protocols.KindSPICE, 0}, {"web", protocols.KindSerial, 2}} {
		if _, err := r.ResolveConsole(ctx, c.dom, c.kind, c.index); !errors.Is(err, resolver.ErrNotFound) {
			t.Errorf("%+v: %v, want ErrNotFound", c, err)
		}
	}
	if _, err := r.Resolve(ctx, vnc); err != nil {
		t.Fatalf("the token after ResolveConsole: %v (it must consume nothing)", err)
	}
	if err := f.c.Disable(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "console gone after disable", time.Second, func() (bool, string) {
		_, err := r.ResolveConsole(ctx, "web", protocols.KindVNC, 0)
		return errors.Is(err, resolver.ErrNotFound), fmt.Sprint("ResolveConsole: ", err)
	})
}
