package libvirtresolver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver"
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
// only here. Clients fetch the fresh token through libvirt (Conn.Token).
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
	// The libvirt calls take no context: run them apart, so that ctx
	// bounds the wait. An abandoned consume finishes on its own.
	done := make(chan error, 1)
	go func() { done <- r.consume(token) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: consume a token: %w", resolver.ErrUnavailable, ctx.Err())
	}
}

func (r *Resolver) consume(token string) error {
	if token == "" {
		return resolver.ErrNotFound
	}
	// Holding every watcher's refresh lock keeps reloads out until the
	// secrets have their new values: a reload in between would read the
	// old value and put the consumed token back. While it is held, a
	// watcher's connection can only go (to nil), never come back.
	for _, w := range r.watchers {
		w.refresh.Lock()
	}
	locked := true
	unlock := func() {
		if locked {
			locked = false
			for i := len(r.watchers) - 1; i >= 0; i-- {
				r.watchers[i].refresh.Unlock()
			}
		}
	}
	defer unlock()

	hits := r.take(token)
	if len(hits) == 0 {
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

	// One new value per secret (consoles may share one), set through a
	// connection of a watcher that holds it.
	type rotated struct {
		l     libvirtapi.Libvirt
		dom   libvirt.Domain
		fresh []*entry
	}
	var (
		done  = map[libvirt.UUID]bool{}
		pokes []rotated
		errs  []error
	)
	for _, e := range hits {
		if done[e.secret] {
			continue
		}
		done[e.secret] = true
		var same []*entry
		for _, x := range hits {
			if x.secret == e.secret {
				same = append(same, x)
			}
		}
		var l libvirtapi.Libvirt
		for _, x := range same {
			if l = x.w.conn(); l != nil {
				break
			}
		}
		what := fmt.Sprintf("%s %d of domain %s (secret %s)", e.kind, e.index, e.dom.Name, uuidString(e.secret))
		if l == nil {
			errs = append(errs, fmt.Errorf("%w: rotate the token of %s: %s", resolver.ErrUnavailable, what, e.w.down()))
			continue
		}
		val := newToken()
		s, err := l.SecretLookupByUUID(e.secret)
		if err == nil {
			err = l.SecretSetValue(s, []byte(val), 0)
		}
		switch {
		case hasCode(err, libvirt.ErrNoSecret):
			// The secret is gone (disabled meanwhile): so is the token.
			// Still poke the domain so that others notice at once.
			pokes = append(pokes, rotated{l: l, dom: e.dom})
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("%w: rotate the token of %s: libvirt %s: %s",
				resolver.ErrUnavailable, what, e.w.t.raw, oneLine(err.Error())))
			continue
		}
		p := rotated{l: l, dom: e.dom}
		for _, x := range same {
			n := *x
			n.token = []byte(val)
			p.fresh = append(p.fresh, &n)
		}
		pokes = append(pokes, p)
	}

	// The fresh tokens resolve here at once; the metadata-change event
	// our own write raises re-reads them anyway.
	r.mu.Lock()
	for _, p := range pokes {
		for _, n := range p.fresh {
			if n.w.conn() == nil {
				continue // disconnected: its table is being emptied
			}
			n.w.domains[n.dom.UUID] = append(n.w.domains[n.dom.UUID], n)
			h := sha256.Sum256(n.token)
			r.byHash[h] = append(r.byHash[h], n)
		}
	}
	r.mu.Unlock()
	unlock()

	// Rewrite each domain's live metadata unchanged (as Rotate does),
	// only to raise a metadata-change event for every resolver watching
	// this libvirtd.
	poked := map[libvirt.UUID]bool{}
	for _, p := range pokes {
		if poked[p.dom.UUID] {
			continue
		}
		poked[p.dom.UUID] = true
		if err := pokeMetadata(p.l, p.dom); err != nil {
			errs = append(errs, fmt.Errorf("%w: tell other resolvers that a token of domain %s changed: %s",
				resolver.ErrUnavailable, p.dom.Name, oneLine(err.Error())))
		}
	}
	return errors.Join(errs...)
}

// take removes every entry whose token is token from the table and
// returns them. Each candidate is compared in constant time.
func (r *Resolver) take(token string) []*entry {
	h := sha256.Sum256([]byte(token))
	r.mu.Lock()
	defer r.mu.Unlock()
	var hits []*entry
	for _, e := range r.byHash[h] {
		if subtle.ConstantTimeCompare(e.token, []byte(token)) == 1 {
			hits = append(hits, e)
		}
	}
	if len(hits) == 0 {
		return nil
	}
	r.removeLocked(hits)
	for _, e := range hits {
		list := e.w.domains[e.dom.UUID]
		for i, x := range list {
			if x == e {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(e.w.domains, e.dom.UUID)
		} else {
			e.w.domains[e.dom.UUID] = list
		}
	}
	return hits
}

// pokeMetadata writes a running domain's live console-proxy metadata back
// as it is. A domain that is gone or has no metadata needs no event from
// us (stopping or disabling raised one).
func pokeMetadata(l libvirtapi.Libvirt, d libvirt.Domain) error {
	cur, err := l.DomainGetMetadata(d, int32(libvirt.DomainMetadataElement),
		libvirt.OptString{Namespace}, libvirt.DomainAffectLive)
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
		libvirt.OptString{MetadataKey}, libvirt.OptString{Namespace}, libvirt.DomainAffectLive)
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
