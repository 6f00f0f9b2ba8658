// Package libvirtresolver resolves console tokens from libvirtd: the
// values of the libvirt secrets that the console-proxy domain metadata of
// PROTOCOLS.md §1 names. Its Resolver keeps a token table per libvirt URI
// current by following domain events, checks each answer against the
// running domain, and makes tokens single-use by rotating their secrets.
//
// Its subpackages are the rest of the project's use of go-libvirt and
// libvirtxml, one job each:
//
//   - libvirtapi: the narrow interface to libvirtd the code calls, how to
//     connect, and the errors of doing so;
//   - libvirtfake: an in-memory libvirtd behind that interface, for tests;
//   - transport: libvirt URIs and their unix, tcp, tls and ssh dialers;
//   - domainxml: a domain's console devices, their targets, and the
//     console-proxy metadata, read from its XML;
//   - libvirtadmin: enable, disable, rotate and list consoles' tokens;
//   - consolestream: a pty console's libvirt console stream as a net.Conn;
//   - libvirttest: a real libvirtd and domains for end-to-end tests.
package libvirtresolver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// DefaultURI is the libvirt URI New watches when given none.
const DefaultURI = transport.DefaultURI

// ErrStreamOnly means a token names a pty console, which only a proxy in
// the resolver's own process can reach (see WithConsoleStreams).
var ErrStreamOnly = fmt.Errorf("%w: console reachable only through libvirt's console stream", resolver.ErrUnsupported)

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
//
// Each URI has a watcher, which owns the token table of that URI's
// domains: only its methods write it, under its refresh lock. Every
// goroutine the Resolver starts is a worker that Close waits for.
type Resolver struct {
	o        options
	watchers []*watcher

	cancel  context.CancelFunc
	wmu     sync.Mutex
	closed  bool           // no new workers
	workers sync.WaitGroup // the watchers, and the libvirt calls of Consume and verify
}

// errClosed is the error of a call on a closed Resolver.
var errClosed = fmt.Errorf("%w: resolver closed", resolver.ErrUnavailable)

// entry is what one token of a watcher's table opens: a console of a
// running domain instance.
type entry struct {
	secret libvirt.UUID   // the libvirt secret whose value the token is
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
	r := &Resolver{o: o}
	seen := map[string]bool{}
	for _, u := range uris {
		t, err := transport.Parse(u, o.dialer)
		if err != nil {
			return nil, err
		}
		if !seen[t.Raw] {
			seen[t.Raw] = true
			r.watchers = append(r.watchers, newWatcher(r, t))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	for _, w := range r.watchers {
		r.spawn(func() { w.run(ctx) })
	}
	return r, nil
}

// Close stops watching libvirtd and returns when every worker is done:
// the watchers, and any libvirt call that a Consume or Resolve left
// behind when its context ended (such a call ends when libvirtd answers,
// or fails at once once the watcher has disconnected). Resolve and
// Consume fail afterwards.
func (r *Resolver) Close() error {
	r.wmu.Lock()
	r.closed = true
	r.wmu.Unlock()
	r.cancel()
	r.workers.Wait()
	return nil
}

// spawn runs f in a worker, unless Close has begun; it reports whether it
// did.
func (r *Resolver) spawn(f func()) bool {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return false
	}
	r.workers.Go(f)
	return true
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
	return r.resolve(ctx, func() (*watcher, *entry) { return r.find(token) })
}

// resolve returns the target of the entry find finds, checked against
// libvirt (verify).
func (r *Resolver) resolve(ctx context.Context, find func() (*watcher, *entry)) (protocols.Target, error) {
	r.awaitFirstSync(ctx)
	// A second look only after verify re-read a domain that had changed.
	for range 2 {
		w, e := find()
		if e == nil {
			return protocols.Target{}, r.missing()
		}
		if err := w.unavailable(); err != nil {
			return protocols.Target{}, err
		}
		fresh, err := w.verify(ctx, e)
		if err != nil {
			return protocols.Target{}, err
		}
		if fresh {
			return r.serve(e)
		}
	}
	return protocols.Target{}, resolver.ErrNotFound
}

// ResolveConsole returns the console of kind and number index of domain
// (its name or UUID), for a share link that names it so (package grant);
// an error wraps resolver.ErrNotFound when it has no enabled console so.
// It consumes nothing: the grant is the credential.
func (r *Resolver) ResolveConsole(ctx context.Context, domain string, kind protocols.Kind, index int) (protocols.Target, error) {
	match := func(e *entry) bool {
		return e.kind == kind && e.index == index && (e.dom.Name == domain || libvirtapi.UUIDString(e.dom.UUID) == domain)
	}
	return r.resolve(ctx, func() (*watcher, *entry) {
		for _, w := range r.watchers {
			if e, ok := w.tokens.Find(match); ok {
				return w, e
			}
		}
		return nil, nil
	})
}

// find looks token up in every watcher's table.
func (r *Resolver) find(token string) (*watcher, *entry) {
	for _, w := range r.watchers {
		if e, ok := w.tokens.Lookup(token); ok {
			return w, e
		}
	}
	return nil, nil
}

// missing is the error for a token no table has: ErrUnavailable when a
// URI cannot answer now (its table is empty, not complete), else
// ErrNotFound.
func (r *Resolver) missing() error {
	var down []string
	for _, w := range r.watchers {
		if why := w.down(); why != "" {
			down = append(down, why)
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("%w: %s", resolver.ErrUnavailable, strings.Join(down, "; "))
	}
	return resolver.ErrNotFound
}

// serve returns e's target, if this resolver can serve it.
func (r *Resolver) serve(e *entry) (protocols.Target, error) {
	if e.err != nil {
		return protocols.Target{}, e.err
	}
	if e.target.Dial != nil && !r.o.streams {
		return protocols.Target{}, fmt.Errorf("%w: %s %d of domain %s is a pty; serve it with the proxy and resolver in one process",
			ErrStreamOnly, e.kind, e.index, e.dom.Name)
	}
	return e.target, nil
}

// tokens returns how many tokens of a domain are in the tables (tests).
func (r *Resolver) tokens(domainUUID string) int {
	u, _ := libvirtapi.ParseUUID(domainUUID)
	n := 0
	for _, w := range r.watchers {
		n += w.tokens.GroupLen(u)
	}
	return n
}

// Synced reports how many of the resolver's URIs are connected and synced
// now, out of total: a health check's view (a proxy in front of many
// hypervisors can serve the consoles of those it reaches).
func (r *Resolver) Synced() (synced, total int) {
	for _, w := range r.watchers {
		if w.conn() != nil {
			synced++
		}
	}
	return synced, len(r.watchers)
}
