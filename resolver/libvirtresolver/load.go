package libvirtresolver

import (
	"context"
	"fmt"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// tokenEntries are the tokens of one domain, as the table takes them.
type tokenEntries = []resolver.Token[*entry]

// syncAll re-reads every running domain and replaces the table.
func (w *watcher) syncAll(l libvirtapi.Libvirt) error {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	doms, _, err := l.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive)
	if err != nil {
		return fmt.Errorf("list domains: %w", err)
	}
	all := map[libvirt.UUID]tokenEntries{}
	for _, d := range doms {
		entries, err := w.load(l, d)
		if err != nil {
			if !l.IsConnected() {
				return errLost
			}
			continue
		}
		all[d.UUID] = entries
	}
	w.tokens.Reset(all)
	return nil
}

// reload re-reads one domain.
func (w *watcher) reload(l libvirtapi.Libvirt, d libvirt.Domain) error {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	entries, err := w.load(l, d)
	if err != nil && !libvirt.IsNotFound(err) {
		return err
	}
	w.tokens.Set(d.UUID, entries)
	return nil
}

// drop removes a domain's tokens.
func (w *watcher) drop(u libvirt.UUID) {
	w.refresh.Lock()
	defer w.refresh.Unlock()
	w.tokens.Set(u, nil)
}

// load reads a domain's live XML, metadata and secrets and computes its
// tokens; none when it is not running or not enabled.
func (w *watcher) load(l libvirtapi.Libvirt, d libvirt.Domain) (tokenEntries, error) {
	raw, err := l.DomainGetXMLDesc(d, libvirt.DomainXMLSecure)
	if err != nil {
		return nil, err
	}
	x, err := domainxml.Parse(raw)
	if err != nil {
		w.log.Warn("cannot read the domain's consoles", "domain", d.Name, "err", err)
		return nil, nil
	}
	if !x.Running() || x.Metadata == nil {
		return nil, nil
	}
	d.ID = int32(x.ID)
	var out tokenEntries
	for _, m := range x.Metadata.Consoles {
		tok, err := w.loadConsole(l, d, x.Devices, m)
		if err != nil {
			return nil, err
		}
		if tok.Value != nil {
			out = append(out, tok)
		}
	}
	return out, nil
}

// loadConsole computes the token of one console of the metadata; none
// (a nil Value) when it cannot have one. Only a lost connection is an
// error.
func (w *watcher) loadConsole(l libvirtapi.Libvirt, d libvirt.Domain, devs []domainxml.Device, m domainxml.MetaConsole) (resolver.Token[*entry], error) {
	var none resolver.Token[*entry]
	kind, err := m.Kind()
	if err != nil {
		w.log.Warn("bad console in metadata", "domain", d.Name, "err", err)
		return none, nil
	}
	index, err := m.Index()
	if err != nil {
		w.log.Warn("bad console in metadata", "domain", d.Name, "type", kind, "err", err)
		return none, nil
	}
	record, err := m.RecordPolicy()
	if err != nil {
		// Not served rather than served unrecorded: it may say required.
		w.log.Warn("bad console in metadata", "domain", d.Name, "type", kind, "index", index, "err", err)
		return none, nil
	}
	su, ok := libvirtapi.ParseUUID(m.Token)
	if !ok {
		w.log.Warn("console metadata token is not a secret UUID", "domain", d.Name, "type", kind, "index", index)
		return none, nil
	}
	val, err := secretValue(l, su)
	if err != nil || len(val) == 0 {
		if !l.IsConnected() {
			return none, err
		}
		w.log.Warn("console secret missing or without a readable value (private?)", "domain", d.Name, "type", kind, "index", index, "secret", m.Token)
		return none, nil
	}
	e := &entry{secret: su, dom: d, kind: kind, index: index}
	if dev, ok := domainxml.FindDevice(devs, kind, index); !ok {
		e.err = fmt.Errorf("%w: domain %s has no %s device with index %d", resolver.ErrNotFound, d.Name, kind, index)
	} else if t, err := dev.Target(m.Host, m.IsInsecure(), w.u.Host); err != nil {
		e.err = fmt.Errorf("domain %s: %w", d.Name, err)
	} else if dev.Stream() {
		e.target = consolestream.Target(kind, w.u, d, dev.Alias, w.r.o.forceConsoles)
	} else {
		e.target = t
	}
	if e.err == nil {
		e.target.Domain, e.target.DomainUUID = d.Name, libvirtapi.UUIDString(d.UUID)
		e.target.Record = record
	}
	return resolver.Token[*entry]{Token: string(val), Value: e}, nil
}

func secretValue(l libvirtapi.Libvirt, u libvirt.UUID) ([]byte, error) {
	s, err := l.SecretLookupByUUID(u)
	if err != nil {
		return nil, err
	}
	return l.SecretGetValue(s, 0)
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
	// In a worker, so that ctx bounds the wait (see Consume).
	ch := make(chan res, 1)
	if !w.r.spawn(func() {
		d, err := l.DomainLookupByUUID(e.dom.UUID)
		ch <- res{d, err}
	}) {
		return false, errClosed
	}
	var rr res
	select {
	case rr = <-ch:
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", resolver.ErrUnavailable, ctx.Err())
	}
	switch {
	case libvirt.IsNotFound(rr.err):
		w.drop(e.dom.UUID)
		return false, nil
	case rr.err != nil:
		return false, fmt.Errorf("%w: libvirt %s: %s", resolver.ErrUnavailable, w.u.Raw, libvirtapi.OneLine(rr.err.Error()))
	case rr.d.ID == e.dom.ID:
		return true, nil
	}
	if err := w.reload(l, rr.d); err != nil {
		return false, fmt.Errorf("%w: libvirt %s: %s", resolver.ErrUnavailable, w.u.Raw, libvirtapi.OneLine(err.Error()))
	}
	return false, nil
}
