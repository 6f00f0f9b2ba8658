// Package libvirtresolver is the project's only user of go-libvirt and
// libvirtxml. It resolves console tokens from libvirtd (the console-proxy
// domain metadata and libvirt secrets of PROTOCOLS.md §1), keeps its token
// table current by following domain events, administers the metadata and
// secrets (Enable, Disable, Rotate, Consoles), and opens libvirt's console
// stream of pty serial consoles as a net.Conn.
package libvirtresolver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// Resolver maps tokens to the consoles of the running domains of one or
// more libvirt URIs. It follows lifecycle, metadata-change and device
// events, so that enabling, disabling or rotating takes effect at once and
// a stopped domain's tokens stop resolving at once; it reconnects with
// backoff when libvirtd goes away and answers errors wrapping
// resolver.ErrUnavailable (not stale data) until it has re-synced. Before
// answering, it checks with libvirtd that the token's domain is still the
// same running instance, so a token never reaches another domain that has
// taken over its port. Tokens are single-use by default: Consume retires
// one everywhere by rotating its secret (WithReusableTokens turns the
// policy off). Safe for concurrent use.
type Resolver struct {
	o        options
	watchers []*watcher

	mu     sync.RWMutex
	byHash map[[32]byte][]*entry

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// entry is one token of the table.
type entry struct {
	token  []byte
	secret libvirt.UUID // the libvirt secret whose value token is
	w      *watcher
	dom    libvirt.Domain // with the ID of the running instance
	kind   protocols.Kind
	index  int
	target protocols.Target
	err    error // set instead of target when the console cannot be served
}

// New starts resolving the consoles of the given libvirt URIs (DefaultURI
// when none). It returns at once; a Resolve that comes before a URI's
// first sync attempt has ended waits for it (at most firstSyncWait), and
// Ready waits for all of them. Only malformed URIs fail here.
func New(uris []string, opts ...Option) (*Resolver, error) {
	o := buildOptions(opts)
	if len(uris) == 0 {
		uris = []string{DefaultURI}
	}
	r := &Resolver{o: o, byHash: map[[32]byte][]*entry{}}
	seen := map[string]bool{}
	for _, u := range uris {
		t, err := parseURI(u, &o)
		if err != nil {
			return nil, err
		}
		if seen[t.raw] {
			continue
		}
		seen[t.raw] = true
		r.watchers = append(r.watchers, &watcher{r: r, t: t, log: o.logger.With("uri", t.raw),
			domains: map[libvirt.UUID][]*entry{}, ready: make(chan struct{})})
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	for _, w := range r.watchers {
		r.done.Add(1)
		go func() {
			defer r.done.Done()
			w.run(ctx)
		}()
	}
	return r, nil
}

// Close stops watching libvirtd. Resolve fails afterwards.
func (r *Resolver) Close() error {
	r.cancel()
	r.done.Wait()
	return nil
}

// Ready waits until every URI has been synced once, or ctx ends; then it
// returns the connection errors of the URIs that are still not synced.
func (r *Resolver) Ready(ctx context.Context) error {
	var errs []error
	for _, w := range r.watchers {
		select {
		case <-w.ready:
		case <-ctx.Done():
		}
	}
	for _, w := range r.watchers {
		if err := w.unavailable(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// firstSyncWait bounds how long a Resolve waits for the first sync of a
// URI that is still connecting. A server starts listening at once, and a
// viewer that arrives in its first milliseconds should get its console,
// not a 503; a libvirtd that does not answer costs a request at most this.
const firstSyncWait = 5 * time.Second

// awaitFirstSync waits until every URI's first sync attempt has ended, ctx
// ends, or firstSyncWait passes. It costs nothing once all are ready.
func (r *Resolver) awaitFirstSync(ctx context.Context) {
	var timeout <-chan time.Time
	for _, w := range r.watchers {
		select {
		case <-w.ready:
			continue
		default:
		}
		if timeout == nil {
			t := time.NewTimer(firstSyncWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-w.ready:
		case <-ctx.Done():
			return
		case <-timeout:
			return
		}
	}
}

// Resolve implements resolver.Resolver.
func (r *Resolver) Resolve(ctx context.Context, token string) (protocols.Target, error) {
	r.awaitFirstSync(ctx)
	for attempt := 0; ; attempt++ {
		e, down := r.find(token)
		if e == nil {
			if len(down) > 0 {
				return protocols.Target{}, fmt.Errorf("%w: %s", resolver.ErrUnavailable, strings.Join(down, "; "))
			}
			return protocols.Target{}, resolver.ErrNotFound
		}
		if err := e.w.unavailable(); err != nil {
			return protocols.Target{}, err
		}
		fresh, err := e.w.verify(ctx, e)
		if err != nil {
			return protocols.Target{}, err
		}
		if !fresh {
			if attempt > 0 {
				return protocols.Target{}, resolver.ErrNotFound
			}
			continue // the domain was re-read: look again
		}
		if e.err != nil {
			return protocols.Target{}, e.err
		}
		if e.target.Network == Network && !r.o.streams {
			return protocols.Target{}, fmt.Errorf("%w: %s %d of domain %s is a pty; serve it with the proxy and resolver in one process",
				ErrStreamOnly, e.kind, e.index, e.dom.Name)
		}
		return e.target, nil
	}
}

// find looks token up in constant time per candidate and reports which
// URIs cannot answer now.
func (r *Resolver) find(token string) (*entry, []string) {
	var hit *entry
	var down []string
	if token != "" {
		h := sha256.Sum256([]byte(token))
		r.mu.RLock()
		for _, e := range r.byHash[h] {
			if subtle.ConstantTimeCompare(e.token, []byte(token)) == 1 {
				hit = e
				break
			}
		}
		r.mu.RUnlock()
	}
	if hit == nil {
		for _, w := range r.watchers {
			if why := w.down(); why != "" {
				down = append(down, why)
			}
		}
	}
	return hit, down
}

// setDomain replaces the entries of one domain of w.
func (r *Resolver) setDomain(w *watcher, u libvirt.UUID, entries []*entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(w.domains[u])
	if len(entries) == 0 {
		delete(w.domains, u)
	} else {
		w.domains[u] = entries
	}
	for _, e := range entries {
		h := sha256.Sum256(e.token)
		r.byHash[h] = append(r.byHash[h], e)
	}
}

// replaceAll replaces every entry of w.
func (r *Resolver) replaceAll(w *watcher, doms map[libvirt.UUID][]*entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, old := range w.domains {
		r.removeLocked(old)
	}
	w.domains = map[libvirt.UUID][]*entry{}
	for u, entries := range doms {
		w.domains[u] = entries
		for _, e := range entries {
			h := sha256.Sum256(e.token)
			r.byHash[h] = append(r.byHash[h], e)
		}
	}
}

func (r *Resolver) removeLocked(old []*entry) {
	for _, e := range old {
		h := sha256.Sum256(e.token)
		list := r.byHash[h]
		for i, x := range list {
			if x == e {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(r.byHash, h)
		} else {
			r.byHash[h] = list
		}
	}
}

// tokens returns how many tokens of a domain are in the table (tests).
func (r *Resolver) tokens(domainUUID string) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, w := range r.watchers {
		for u, entries := range w.domains {
			if uuidString(u) == domainUUID {
				n += len(entries)
			}
		}
	}
	return n
}

// DialContext dials a target's Address on its Network: console streams
// (Network) through the libvirt connection they belong to, anything else
// with a net.Dialer. It has the shape of tunnel.Dialer, so the proxy of a
// process that also runs this resolver can use it as its dialer.
func (r *Resolver) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if network != Network {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	uri, domUUID, device, err := ParseStreamAddress(address)
	if err != nil {
		return nil, err
	}
	var w *watcher
	for _, x := range r.watchers {
		if x.t.raw == uri {
			w = x
		}
	}
	if w == nil {
		return nil, fmt.Errorf("console stream %s: libvirt URI %s is not one this resolver watches", address, uri)
	}
	u, ok := parseUUID(domUUID)
	if !ok {
		return nil, fmt.Errorf("console stream %s: bad domain UUID", address)
	}
	dom := libvirt.Domain{UUID: u}
	r.mu.RLock()
	if entries := w.domains[u]; len(entries) > 0 {
		dom = entries[0].dom
	}
	r.mu.RUnlock()
	return openConsole(ctx, w.t, dom, device, r.o.forceConsoles)
}

// watcher follows one libvirt URI.
type watcher struct {
	r   *Resolver
	t   *target
	log *slog.Logger

	// domains is guarded by r.mu.
	domains map[libvirt.UUID][]*entry

	// refresh serialises the reads of domains (event loop and Resolve),
	// so that an older read never overwrites a newer one.
	refresh sync.Mutex

	smu    sync.Mutex
	l      libvirtapi.Libvirt // nil while disconnected or not synced
	err    error            // why l is nil
	ready  chan struct{}    // closed after the first sync attempt
	readyO sync.Once
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
		return "libvirt " + w.t.raw + ": not connected yet"
	}
	var ce *connectError
	if errors.As(w.err, &ce) {
		return ce.Error()
	}
	return "libvirt " + w.t.raw + ": " + oneLine(w.err.Error())
}

func (w *watcher) conn() libvirtapi.Libvirt {
	w.smu.Lock()
	defer w.smu.Unlock()
	return w.l
}

func (w *watcher) setState(l libvirtapi.Libvirt, err error) {
	w.smu.Lock()
	w.l, w.err = l, err
	w.smu.Unlock()
}

func (w *watcher) markReady() { w.readyO.Do(func() { close(w.ready) }) }

func (w *watcher) run(ctx context.Context) {
	backoff := w.r.o.minBackoff
	for {
		synced, err := w.session(ctx)
		// Forget everything first: never answer with stale data.
		w.setState(nil, err)
		w.r.replaceAll(w, nil)
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

// event is what the event loop acts on: a domain to re-read or drop.
type event struct {
	dom  libvirt.Domain
	drop bool
}

// session connects, subscribes, syncs and follows events until the
// connection breaks or ctx ends. synced reports whether it got that far.
func (w *watcher) session(ctx context.Context) (synced bool, err error) {
	l, err := w.t.connect(ctx, &w.r.o)
	if err != nil {
		return false, err
	}
	// Ending a subscription while connected can wedge go-libvirt's
	// router; subscriptions end only with the connection.
	defer l.Disconnect()

	events := make(chan event, 64)
	done := make(chan struct{})
	defer close(done)
	forward := func(ch <-chan any) {
		for ev := range ch {
			var e event
			switch m := ev.(type) {
			case *libvirt.DomainEventCallbackMetadataChangeMsg:
				e.dom = m.Dom
			case *libvirt.DomainEventCallbackDeviceAddedMsg:
				e.dom = m.Dom
			case *libvirt.DomainEventCallbackDeviceRemovedMsg:
				e.dom = m.Msg.Dom
			default:
				continue
			}
			select {
			case events <- e:
			case <-done:
			}
		}
	}
	lc, err := l.LifecycleEvents(context.Background())
	if err != nil {
		return false, fmt.Errorf("subscribe to lifecycle events: %w", err)
	}
	go func() {
		for m := range lc {
			e := event{dom: m.Dom}
			switch libvirt.DomainEventType(m.Event) {
			case libvirt.DomainEventStopped, libvirt.DomainEventUndefined, libvirt.DomainEventCrashed:
				e.drop = true
			}
			select {
			case events <- e:
			case <-done:
			}
		}
	}()
	for _, id := range []libvirt.DomainEventID{libvirt.DomainEventIDMetadataChange, libvirt.DomainEventIDDeviceAdded, libvirt.DomainEventIDDeviceRemoved} {
		ch, err := l.SubscribeEvents(context.Background(), id, nil)
		if err != nil {
			return false, fmt.Errorf("subscribe to domain events %d: %w", id, err)
		}
		go forward(ch)
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
			return true, errors.New("connection to libvirtd lost")
		case e := <-events:
			if e.drop {
				w.refresh.Lock()
				w.r.setDomain(w, e.dom.UUID, nil)
				w.refresh.Unlock()
				continue
			}
			if err := w.reload(l, e.dom); err != nil && !l.IsConnected() {
				return true, errors.New("connection to libvirtd lost")
			}
		case <-tick:
			if err := w.syncAll(l); err != nil {
				return true, err
			}
		}
	}
}

// syncAll re-reads every running domain.
func (w *watcher) syncAll(l libvirtapi.Libvirt) error {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	doms, _, err := l.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
	if err != nil {
		return fmt.Errorf("list domains: %w", err)
	}
	all := map[libvirt.UUID][]*entry{}
	for _, d := range doms {
		entries, err := w.load(l, d)
		if err != nil {
			if !l.IsConnected() {
				return errors.New("connection to libvirtd lost")
			}
			continue
		}
		if len(entries) > 0 {
			all[d.UUID] = entries
		}
	}
	w.r.replaceAll(w, all)
	return nil
}

// reload re-reads one domain.
func (w *watcher) reload(l libvirtapi.Libvirt, d libvirt.Domain) error {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	entries, err := w.load(l, d)
	if err != nil {
		if libvirt.IsNotFound(err) {
			w.r.setDomain(w, d.UUID, nil)
			return nil
		}
		return err
	}
	w.r.setDomain(w, d.UUID, entries)
	return nil
}

// load reads a domain's live XML, metadata and secrets and computes its
// entries; none when it is not running or not enabled.
func (w *watcher) load(l libvirtapi.Libvirt, d libvirt.Domain) ([]*entry, error) {
	raw, err := l.DomainGetXMLDesc(d, libvirt.DomainXMLSecure)
	if err != nil {
		return nil, err
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(raw); err != nil {
		w.log.Warn("cannot parse domain XML", "domain", d.Name, "err", err)
		return nil, nil
	}
	if def.ID == nil || *def.ID <= 0 || def.Metadata == nil {
		return nil, nil
	}
	d.ID = int32(*def.ID)
	meta, err := domainMetadata(def.Metadata.XML)
	if err != nil {
		w.log.Warn("bad console metadata", "domain", d.Name, "err", err)
		return nil, nil
	}
	if meta == nil {
		return nil, nil
	}
	devs := devices(&def)
	domUUID := uuidString(d.UUID)
	var out []*entry
	for _, m := range meta.Consoles {
		kind, err := m.kind()
		if err != nil {
			w.log.Warn("bad console in metadata", "domain", d.Name, "err", err)
			continue
		}
		index, err := m.index()
		if err != nil {
			w.log.Warn("bad console in metadata", "domain", d.Name, "type", kind, "err", err)
			continue
		}
		su, ok := parseUUID(m.Token)
		if !ok {
			w.log.Warn("console metadata token is not a secret UUID", "domain", d.Name, "type", kind, "index", index)
			continue
		}
		s, err := l.SecretLookupByUUID(su)
		if err != nil {
			if !l.IsConnected() {
				return nil, err
			}
			w.log.Warn("console secret missing", "domain", d.Name, "type", kind, "index", index, "secret", m.Token)
			continue
		}
		val, err := l.SecretGetValue(s, 0)
		if err != nil || len(val) == 0 {
			if !l.IsConnected() {
				return nil, err
			}
			w.log.Warn("console secret has no readable value (private?)", "domain", d.Name, "type", kind, "index", index, "secret", m.Token)
			continue
		}
		e := &entry{token: val, secret: su, w: w, dom: d, kind: kind, index: index}
		if dev, ok := findDevice(devs, kind, index); !ok {
			e.err = fmt.Errorf("%w: domain %s has no %s device with index %d", resolver.ErrNotFound, d.Name, kind, index)
		} else if t, err := deviceTarget(dev, m.Host, m.insecure(), w.t, domUUID); err != nil {
			e.err = fmt.Errorf("domain %s: %w", d.Name, err)
		} else {
			e.target = t
		}
		out = append(out, e)
	}
	return out, nil
}

// verify checks with libvirtd that e's domain still runs as the instance
// the entry was read from. If it does not, the domain is re-read and
// fresh is false.
func (w *watcher) verify(ctx context.Context, e *entry) (fresh bool, err error) {
	l := w.conn()
	if l == nil {
		return false, w.unavailable()
	}
	type res struct {
		d   libvirt.Domain
		err error
	}
	ch := make(chan res, 1)
	go func() {
		d, err := l.DomainLookupByUUID(e.dom.UUID)
		ch <- res{d, err}
	}()
	var rr res
	select {
	case rr = <-ch:
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", resolver.ErrUnavailable, ctx.Err())
	}
	switch {
	case libvirt.IsNotFound(rr.err):
		w.refresh.Lock()
		w.r.setDomain(w, e.dom.UUID, nil)
		w.refresh.Unlock()
		return false, nil
	case rr.err != nil:
		return false, fmt.Errorf("%w: libvirt %s: %s", resolver.ErrUnavailable, w.t.raw, oneLine(rr.err.Error()))
	case rr.d.ID == e.dom.ID:
		return true, nil
	}
	if err := w.reload(l, rr.d); err != nil {
		return false, fmt.Errorf("%w: libvirt %s: %s", resolver.ErrUnavailable, w.t.raw, oneLine(err.Error()))
	}
	return false, nil
}
