package libvirtresolver

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

var _ resolver.SingleUser = (*Resolver)(nil)

// SingleUse implements resolver.SingleUser: tokens are single-use unless
// the resolver was made WithReusableTokens.
func (r *Resolver) SingleUse() bool { return !r.o.reusable }

// Consume implements resolver.SingleUser: it retires token, whatever the
// policy (SingleUse tells the proxy whether to call it).
//
// The token's entry is dropped from the table at once, so this resolver
// never answers it again; the libvirt secret of its console gets a new
// random value (as Enable makes them), which this resolver answers at
// once; and the domain's live metadata is rewritten unchanged, so that
// every other resolver watching the same libvirtd gets a metadata-change
// event and re-reads the secrets: the used token is dead everywhere, not
// only here. Clients fetch the fresh token through libvirt
// (libvirtadmin.Conn.Token).
//
// Lookups take constant time with respect to the token, as in Resolve.
// Concurrent calls with one token serialise: exactly one returns nil, the
// others an error wrapping resolver.ErrNotFound, as does a token that
// does not resolve. When libvirtd cannot be reached, or ctx ends first,
// the error wraps resolver.ErrUnavailable; the token may then still be
// valid in libvirtd, but this resolver no longer answers it until it
// re-reads the domain. Errors never contain the token.
func (r *Resolver) Consume(ctx context.Context, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", resolver.ErrUnavailable, err)
	}
	r.awaitFirstSync(ctx)
	// The libvirt calls take no context: run them in a worker, so that
	// ctx bounds the wait. An abandoned consume finishes on its own, and
	// Close waits for it.
	done := make(chan error, 1)
	if !r.spawn(func() { done <- r.consume(token) }) {
		return errClosed
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: consume a token: %w", resolver.ErrUnavailable, ctx.Err())
	}
}

// consume does Consume's work: take the token out of every table, give
// each of its secrets a new value (the new token goes into the tables),
// then, with the tables free again, poke the domains for other resolvers.
func (r *Resolver) consume(token string) error {
	unlock := r.lockRefresh()
	defer unlock()
	hits := r.take(token)
	if len(hits) == 0 {
		return r.missing()
	}
	var (
		pokes []poke
		errs  []error
	)
	for _, same := range bySecret(hits) {
		p, err := rotate(same, token)
		if err != nil {
			errs = append(errs, err)
		}
		if p.l != nil {
			pokes = append(pokes, p)
		}
	}
	unlock()
	return errors.Join(append(errs, pokeAll(pokes)...)...)
}

// hit is a consumed entry and the watcher whose table held it.
type hit struct {
	w *watcher
	e *entry
}

// lockRefresh holds every watcher's refresh lock, so that no reload can
// read a consumed token's old secret value and put it back before the
// secret has a new one; while it is held, a watcher's connection can
// only go (to nil), never come back. unlock may be called more than once.
func (r *Resolver) lockRefresh() (unlock func()) {
	for _, w := range r.watchers {
		w.refresh.Lock()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for i := len(r.watchers) - 1; i >= 0; i-- {
				r.watchers[i].refresh.Unlock()
			}
		})
	}
}

// take removes token's entries from every table; callers hold the
// refresh locks.
func (r *Resolver) take(token string) []hit {
	var hits []hit
	for _, w := range r.watchers {
		for _, e := range w.tokens.Take(token) {
			hits = append(hits, hit{w, e})
		}
	}
	return hits
}

// bySecret groups hits by their secret (consoles may share one), in the
// order of their first hit.
func bySecret(hits []hit) [][]hit {
	var groups [][]hit
	index := map[libvirt.UUID]int{}
	for _, h := range hits {
		i, ok := index[h.e.secret]
		if !ok {
			i = len(groups)
			index[h.e.secret] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], h)
	}
	return groups
}

// poke is a domain whose metadata to rewrite, and the connection to do it.
type poke struct {
	l   libvirtapi.Libvirt
	dom libvirt.Domain
}

// rotate gives the secret of same (hits sharing one secret) a new value,
// through a connection of a watcher that held it, and puts the new token
// into those watchers' tables at once. It returns the domain to poke
// (with a nil connection when there is none).
func rotate(same []hit, token string) (poke, error) {
	e := same[0].e
	what := fmt.Sprintf("%s %d of domain %s (secret %s)", e.kind, e.index, e.dom.Name, libvirtapi.UUIDString(e.secret))
	w, l := connected(same)
	if l == nil {
		return poke{}, fmt.Errorf("%w: rotate the token of %s: %s", resolver.ErrUnavailable, what, same[0].w.down())
	}
	val := resolver.NewToken()
	s, err := l.SecretLookupByUUID(e.secret)
	var cur []byte
	if err == nil {
		cur, err = l.SecretGetValue(s, 0)
	}
	if err == nil && subtle.ConstantTimeCompare(cur, []byte(token)) != 1 {
		// Another resolver of this libvirtd (a replica) spent the token
		// first and has not told us yet: it is dead. This narrows the
		// race between replicas to a read and a write of libvirtd's; it
		// does not close it (secrets have no compare-and-swap).
		return poke{}, fmt.Errorf("%w: token of %s already used", resolver.ErrNotFound, what)
	}
	if err == nil {
		err = l.SecretSetValue(s, []byte(val), 0)
	}
	switch {
	case hasCode(err, libvirt.ErrNoSecret):
		// The secret is gone (disabled meanwhile): so is the token.
		// Still poke the domain so that others notice at once.
		return poke{l, e.dom}, nil
	case err != nil:
		return poke{}, fmt.Errorf("%w: rotate the token of %s: libvirt %s: %s",
			resolver.ErrUnavailable, what, w.u.Raw, libvirtapi.OneLine(err.Error()))
	}
	// The fresh token resolves here at once; the metadata-change event
	// of the poke re-reads it anyway.
	for _, h := range same {
		h.w.addFresh(val, h.e)
	}
	return poke{l, e.dom}, nil
}

// connected returns the first of hits' watchers that is connected.
func connected(hits []hit) (*watcher, libvirtapi.Libvirt) {
	for _, h := range hits {
		if l := h.w.conn(); l != nil {
			return h.w, l
		}
	}
	return nil, nil
}

// addFresh puts a copy of consumed entry e back with its new token;
// callers hold w.refresh. A disconnected watcher's table stays empty.
func (w *watcher) addFresh(token string, e *entry) {
	if w.conn() == nil {
		return
	}
	n := *e
	w.tokens.Add(n.dom.UUID, tokenEntries{{Token: token, Value: &n}})
}

// pokeAll rewrites each domain's live metadata unchanged (as Rotate does),
// only to raise a metadata-change event for every resolver watching the
// same libvirtd: the used token is dead there too.
func pokeAll(pokes []poke) []error {
	var errs []error
	poked := map[libvirt.UUID]bool{}
	for _, p := range pokes {
		if poked[p.dom.UUID] {
			continue
		}
		poked[p.dom.UUID] = true
		if err := pokeMetadata(p.l, p.dom); err != nil {
			errs = append(errs, fmt.Errorf("%w: tell other resolvers that a token of domain %s changed: %s",
				resolver.ErrUnavailable, p.dom.Name, libvirtapi.OneLine(err.Error())))
		}
	}
	return errs
}

// pokeMetadata writes a running domain's live console-proxy metadata back
// as it is. A domain that is gone or has no metadata needs no event from
// us (stopping or disabling raised one).
func pokeMetadata(l libvirtapi.Libvirt, d libvirt.Domain) error {
	cur, err := l.DomainGetMetadata(d, int32(libvirt.DomainMetadataElement),
		libvirt.OptString{domainxml.Namespace}, libvirt.DomainAffectLive)
	if err != nil {
		if isGone(err) {
			return nil
		}
		return err
	}
	if strings.TrimSpace(cur) == "" {
		return nil
	}
	err = l.DomainSetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{cur},
		libvirt.OptString{domainxml.MetadataKey}, libvirt.OptString{domainxml.Namespace}, libvirt.DomainAffectLive)
	if isGone(err) {
		return nil
	}
	return err
}

// isGone reports whether err says the domain or its metadata does not
// exist (any more), or the domain is not running.
func isGone(err error) bool {
	return hasCode(err, libvirt.ErrNoDomain, libvirt.ErrNoDomainMetadata, libvirt.ErrOperationInvalid)
}

// hasCode reports whether err is a libvirt error with one of codes.
func hasCode(err error, codes ...libvirt.ErrorNumber) bool {
	var le libvirt.Error
	if !errors.As(err, &le) {
		return false
	}
	for _, c := range codes {
		if le.Code == uint32(c) {
			return true
		}
	}
	return false
}
