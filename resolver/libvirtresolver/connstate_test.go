package libvirtresolver

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// TestFakeConnState: WithConnState hears each URI down at the start, up
// once synced, down when libvirtd goes away and up when it is back; and
// targets name their domain, for audit records.
func TestFakeConnState(t *testing.T) {
	f := newFake(t)
	var (
		mu     sync.Mutex
		states []bool
	)
	last := func() (bool, int) {
		mu.Lock()
		defer mu.Unlock()
		if len(states) == 0 {
			return false, 0
		}
		return states[len(states)-1], len(states)
	}
	r := f.resolver(t, WithConnState(func(uri string, up bool) {
		if uri != fakeURI {
			t.Errorf("state of %q", uri)
		}
		mu.Lock()
		states = append(states, up)
		mu.Unlock()
	}))
	mu.Lock()
	if len(states) < 2 || states[0] || !states[len(states)-1] {
		t.Fatalf("states after the first sync %v, want down then up", states)
	}
	mu.Unlock()

	tok := f.enable(t, protocols.KindVNC)
	waitFor(t, "token", time.Second, resolvesTo(r, tok, func(g protocols.Target) bool {
		return g.Domain == "web" && g.DomainUUID == libvirtapi.UUIDString(f.dom.UUID)
	}))

	f.h.Refuse(errors.New("connection refused"))
	f.h.CutAll()
	waitFor(t, "down", time.Second, func() (bool, string) { up, n := last(); return !up && n > 2, "" })
	f.h.Refuse(nil)
	waitFor(t, "up again", time.Second, func() (bool, string) { up, _ := last(); return up, "" })
}
