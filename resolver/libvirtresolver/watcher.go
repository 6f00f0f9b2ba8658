package libvirtresolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// watcher follows one libvirt URI and owns the token table of its
// running domains.
type watcher struct {
	r   *Resolver
	u   *transport.URI
	log *slog.Logger

	// tokens maps the tokens of the URI's running domains to their
	// entries, grouped by domain UUID. Only the watcher's methods write
	// it, holding refresh; Resolve reads it at any time.
	tokens resolver.TokenTable[libvirt.UUID, *entry]

	// refresh serialises the changes of tokens: reads of libvirtd that
	// end in a write (sync, reload, drop: an older read never overwrites
	// a newer one), consume (no read puts a consumed token back before
	// its secret has a new value) and the reset when the connection ends.
	refresh sync.Mutex

	smu    sync.Mutex
	l      libvirtapi.Libvirt // nil while disconnected or not synced
	err    error              // why l is nil
	ready  chan struct{}      // closed after the first sync attempt
	readyO sync.Once
}

func newWatcher(r *Resolver, u *transport.URI) *watcher {
	return &watcher{r: r, u: u, log: r.o.logger.With("uri", u.Raw), ready: make(chan struct{})}
}

func (w *watcher) unavailable() error {
	if why := w.down(); why != "" {
		return fmt.Errorf("%w: %s", resolver.ErrUnavailable, why)
	}
	return nil
}

// down says why w cannot answer now, or "" when it can.
func (w *watcher) down() string {
	w.smu.Lock()
	defer w.smu.Unlock()
	switch {
	case w.l != nil:
		return ""
	case w.err == nil:
		return "libvirt " + w.u.Raw + ": not connected yet"
	}
	var ce *libvirtapi.ConnectError
	if errors.As(w.err, &ce) {
		return ce.Error()
	}
	return "libvirt " + w.u.Raw + ": " + libvirtapi.OneLine(w.err.Error())
}

// conn returns the synced connection, or nil.
func (w *watcher) conn() libvirtapi.Libvirt {
	w.smu.Lock()
	defer w.smu.Unlock()
	return w.l
}

func (w *watcher) setState(l libvirtapi.Libvirt, err error) {
	w.smu.Lock()
	w.l, w.err = l, err
	w.smu.Unlock()
	w.r.o.connState(w.u.Raw, l != nil)
}

func (w *watcher) markReady() { w.readyO.Do(func() { close(w.ready) }) }

// run connects, follows and reconnects with backoff until ctx ends.
func (w *watcher) run(ctx context.Context) {
	w.r.o.connState(w.u.Raw, false)
	backoff := w.r.o.minBackoff
	for {
		synced, err := w.session(ctx)
		w.forget(err)
		w.markReady()
		if ctx.Err() != nil {
			return
		}
		if synced {
			backoff = w.r.o.minBackoff
			w.log.Warn("libvirt connection lost; reconnecting", "err", err)
		} else {
			w.log.Debug("libvirt connection failed", "err", err, "retry_in", backoff)
		}
		// Jitter of ±20 % keeps resolvers of one libvirtd apart.
		d := time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(2*backoff, w.r.o.maxBackoff)
	}
}

// forget empties the table when the connection is gone: never answer with
// stale data.
func (w *watcher) forget(why error) {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	w.setState(nil, why)
	w.tokens.Reset(nil)
}

// event is what the event loop acts on: a domain to re-read or drop.
type event struct {
	dom  libvirt.Domain
	drop bool
}

// errLost is the error of a session whose connection broke.
var errLost = errors.New("connection to libvirtd lost")

// session connects, subscribes, syncs and follows events until the
// connection breaks or ctx ends. synced reports whether it got that far.
func (w *watcher) session(ctx context.Context) (synced bool, err error) {
	l, err := libvirtapi.Connect(ctx, w.u, w.r.o.connector)
	if err != nil {
		return false, err
	}
	// Ending a subscription while connected can wedge go-libvirt's
	// router; subscriptions end only with the connection, and with them
	// the goroutines that forward their events.
	var forwarders sync.WaitGroup
	defer forwarders.Wait()
	defer l.Disconnect()
	events, err := subscribe(l, &forwarders)
	if err != nil {
		return false, err
	}
	if err := w.syncAll(l); err != nil {
		return false, err
	}
	w.setState(l, nil)
	w.markReady()
	w.log.Info("libvirt connected and synced")

	var tick <-chan time.Time
	if w.r.o.resync > 0 {
		t := time.NewTicker(w.r.o.resync)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-l.Disconnected():
			return true, errLost
		case e := <-events:
			if err := w.apply(l, e); err != nil && !l.IsConnected() {
				return true, errLost
			}
		case <-tick:
			if err := w.syncAll(l); err != nil {
				return true, err
			}
		}
	}
}

// apply acts on one event.
func (w *watcher) apply(l libvirtapi.Libvirt, e event) error {
	if e.drop {
		w.drop(e.dom.UUID)
		return nil
	}
	return w.reload(l, e.dom)
}

// subscribe subscribes to the events that change what a domain's tokens
// open, merged into one channel by goroutines of forwarders. They end
// when the connection does (go-libvirt then closes its channels).
func subscribe(l libvirtapi.Libvirt, forwarders *sync.WaitGroup) (<-chan event, error) {
	events := make(chan event, 64)
	lc, err := l.LifecycleEvents(context.Background())
	if err != nil {
		return nil, fmt.Errorf("subscribe to lifecycle events: %w", err)
	}
	forwarders.Go(func() { forward(l, lc, events, lifecycleEvent) })
	for _, id := range []libvirt.DomainEventID{libvirt.DomainEventIDMetadataChange, libvirt.DomainEventIDDeviceAdded, libvirt.DomainEventIDDeviceRemoved} {
		ch, err := l.SubscribeEvents(context.Background(), id, nil)
		if err != nil {
			return nil, fmt.Errorf("subscribe to domain events %d: %w", id, err)
		}
		forwarders.Go(func() { forward(l, ch, events, domainEvent) })
	}
	return events, nil
}

// forward converts the messages of in into events until in closes. It
// reads in to its end, so that go-libvirt never blocks on it.
func forward[M any](l libvirtapi.Libvirt, in <-chan M, out chan<- event, convert func(M) (event, bool)) {
	for m := range in {
		e, ok := convert(m)
		if !ok {
			continue
		}
		select {
		case out <- e:
		case <-l.Disconnected():
		}
	}
}

func lifecycleEvent(m libvirt.DomainEventLifecycleMsg) (event, bool) {
	e := event{dom: m.Dom}
	switch libvirt.DomainEventType(m.Event) {
	case libvirt.DomainEventStopped, libvirt.DomainEventUndefined, libvirt.DomainEventCrashed:
		e.drop = true
	}
	return e, true
}

func domainEvent(m any) (event, bool) {
	switch m := m.(type) {
	case *libvirt.DomainEventCallbackMetadataChangeMsg:
		return event{dom: m.Dom}, true
	case *libvirt.DomainEventCallbackDeviceAddedMsg:
		return event{dom: m.Dom}, true
	case *libvirt.DomainEventCallbackDeviceRemovedMsg:
		return event{dom: m.Msg.Dom}, true
	}
	return event{}, false
}
