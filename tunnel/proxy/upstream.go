package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel"
)

// upstream is the console side of one request: resolved, dialled, and
// through QEMU's side of the handshake. Whoever holds it owns conn and
// must call release when the connection ends.
type upstream struct {
	target  protocols.Target
	conn    net.Conn // QEMU's side, as hs.Server returned it
	hs      protocols.Handshaker
	release func() // never nil
	info    protocols.Info

	// hub, for a text console, is the shared console the session joins;
	// conn is nil then (the hub owns the console's connection).
	hub *hub

	// consumed is the single-use token this connection consumed, to give
	// back if no session starts; "" when it consumed none.
	consumed string
}

// open resolves token (or joins the live SPICE session it opened),
// consumes it if the resolver's tokens are single-use, dials the console
// and runs QEMU's side of the handshake. If that fails, it gives the
// token back (refund) where the resolver can.
func (p *Proxy) open(ctx context.Context, token string, asked protocols.Role) (*upstream, *Error) {
	if target, ok := p.spice().Join(token); ok {
		target.Role = target.Role.Least(asked)
		if herr := p.servable(target); herr != nil {
			return nil, herr
		}
		if herr := viewable(target); herr != nil {
			return nil, herr
		}
		return p.dial(ctx, target, token, false)
	}
	target, herr := p.resolve(ctx, token)
	if herr != nil {
		return nil, herr
	}
	target, singleUse, herr := p.admit(ctx, token, target, asked, p.servable)
	if herr != nil {
		return nil, herr
	}
	up, herr := p.dialTarget(ctx, target, token, singleUse)
	if herr != nil {
		if singleUse {
			p.refund(ctx, token)
		}
		return nil, herr
	}
	if singleUse {
		up.consumed = token
	}
	return up, nil
}

// admit decides whether a new session may open on the resolved target:
// check (what this path can serve), then the role (what the token
// grants, or less if the viewer asked for less: the session's from here
// on), the console's rule for viewers, a SPICE console's one client —
// all before token is spent, so that it stays good for when the console
// is free — and then spends it if the resolver's tokens are single-use.
func (p *Proxy) admit(ctx context.Context, token string, target protocols.Target, asked protocols.Role, check func(protocols.Target) *Error) (protocols.Target, bool, *Error) {
	if herr := check(target); herr != nil {
		return target, false, herr
	}
	target.Role = target.Role.Least(asked)
	if herr := viewable(target); herr != nil {
		return target, false, herr
	}
	if herr := p.spiceBusy(target); herr != nil {
		return target, false, herr
	}
	singleUse, herr := p.consume(ctx, token)
	return target, singleUse, herr
}

// resolve asks the Resolver which console token opens.
func (p *Proxy) resolve(ctx context.Context, token string) (protocols.Target, *Error) {
	target, err := p.Resolver.Resolve(ctx, token)
	switch {
	case errors.Is(err, resolver.ErrNotFound):
		return target, fail(http.StatusNotFound, err, "unknown token")
	case errors.Is(err, resolver.ErrUnavailable):
		return target, fail(http.StatusServiceUnavailable, err, "token resolver unavailable; try again later")
	case errors.Is(err, resolver.ErrUnsupported):
		return target, fail(http.StatusBadGateway, err, "%s", oneLine(err))
	case err != nil:
		return target, fail(http.StatusBadGateway, err, "token resolver failed")
	}
	// Before consuming: a libvirt token cannot be given back.
	return target, withheld(target, token)
}

// consume retires token if the Resolver's tokens are single-use, before
// any byte reaches QEMU: of racing connections with one token exactly one
// gets past it. It reports whether the token was single-use.
func (p *Proxy) consume(ctx context.Context, token string) (bool, *Error) {
	su, ok := p.Resolver.(resolver.SingleUser)
	if !ok || !su.SingleUse() {
		return false, nil
	}
	if err := su.Consume(ctx, token); err != nil {
		if errors.Is(err, resolver.ErrNotFound) {
			return false, fail(http.StatusNotFound, err, "unknown token")
		}
		return false, fail(http.StatusServiceUnavailable, err, "token resolver unavailable; try again later")
	}
	return true, nil
}

// refund gives a consumed token back when its session could not start,
// if the resolver can (Refunder): a request that opened nothing must not
// spend it. ctx may have ended (the handshake timed out): the refund
// gets a few seconds of its own.
func (p *Proxy) refund(ctx context.Context, token string) {
	r, ok := p.Resolver.(resolver.Refunder)
	if !ok {
		return // e.g. libvirt: the secret is rotated already
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := r.Refund(ctx, token); err != nil {
		p.logger().Warn("single-use token not given back", "token_id", resolver.Fingerprint(token), "err", err)
	}
}

// dial gets target's handshaker from the Handshake hook, connects and
// runs QEMU's side of the handshake.
func (p *Proxy) dial(ctx context.Context, target protocols.Target, token string, singleUse bool) (*upstream, *Error) {
	handshake := p.Handshake
	if handshake == nil {
		handshake = p.DefaultHandshake
	}
	hs, release, err := handshake(ctx, target, token, singleUse)
	if release == nil {
		release = func() {}
	}
	if err == nil && hs == nil {
		err = errors.New("no handshaker")
	}
	if err != nil {
		release()
		return nil, fail(http.StatusBadGateway, err, "console type %s is not supported by this proxy", target.Kind)
	}
	conn, info, herr := p.connect(ctx, target, hs)
	if herr != nil {
		release()
		return nil, herr
	}
	return &upstream{target: target, conn: conn, hs: hs, release: release, info: info}, nil
}

// spiceBusy refuses a second viewer of a live SPICE console (409).
func (p *Proxy) spiceBusy(target protocols.Target) *Error {
	if target.Kind == protocols.KindSPICE && p.spice().LiveAt(target) {
		return fail(http.StatusConflict, nil, "this SPICE console already has a viewer and SPICE sessions cannot be shared; try again when it leaves")
	}
	return nil
}

// dialTarget is dial, or dialShared for a text console whose viewers
// share its connection.
func (p *Proxy) dialTarget(ctx context.Context, target protocols.Target, token string, singleUse bool) (*upstream, *Error) {
	if p.sharesText(target) {
		return p.dialShared(ctx, target, token, singleUse)
	}
	return p.dial(ctx, target, token, singleUse)
}

// sharesText reports whether target's viewers share one connection:
// text consoles, unless NoSerialSharing, or a Handshake hook of one's own
// that wants to see each viewer's connection.
func (p *Proxy) sharesText(target protocols.Target) bool {
	return target.Kind.IsText() && !p.NoSerialSharing && p.Handshake == nil
}

// dialShared is dial for text consoles: the viewer joins the console's
// live hub, or opens the console and makes the hub others join.
func (p *Proxy) dialShared(ctx context.Context, target protocols.Target, token string, singleUse bool) (*upstream, *Error) {
	h, created := p.hubs.acquire(target)
	if created {
		up, herr := p.dial(ctx, target, token, singleUse)
		if herr != nil {
			h.opened(nil, protocols.Info{}, herr)
			h.release()
			return nil, herr
		}
		up.release() // nothing to release for text consoles; the hub owns conn
		h.opened(up.conn, up.info, nil)
	} else if herr := h.wait(ctx); herr != nil {
		h.release()
		return nil, herr
	}
	return &upstream{target: target, hs: protocols.PassThrough{}, release: h.release, info: h.info, hub: h}, nil
}

// closeConn closes the console's connection of a session that did not
// start (a hub's is released with the upstream instead).
func (up *upstream) closeConn() {
	if up.conn != nil {
		up.conn.Close()
	}
}

// viewable refuses a view-only session of a console whose input the
// proxy cannot filter: better no session than one that can type.
func viewable(target protocols.Target) *Error {
	if target.Role == protocols.RoleView && target.Kind == protocols.KindSPICE {
		return fail(http.StatusForbidden, nil, "view-only sessions are not supported for %s consoles", target.Kind)
	}
	return nil
}

// servable refuses a target that the proxy's configuration cannot serve
// (cleartext not allowed, no TLS credentials): cheap checks, made before
// a single-use token is consumed or anything is dialled.
func (p *Proxy) servable(target protocols.Target) *Error {
	if target.Dial != nil {
		return nil // as secure as the connection it runs over
	}
	if target.Insecure && !target.TLSTunnel && !p.AllowInsecureTargets {
		return consoleFail(target, nil, "is marked insecure but the proxy refuses cleartext to QEMU; start it with --connect-insecure to allow")
	}
	if (!target.Insecure || target.TLSTunnel) && p.TLSConfig == nil {
		return consoleFail(target, nil, "needs TLS but the proxy has no client credentials; start it with --connect-tls-dir")
	}
	return nil
}

// connect dials target (with TLS where it wants it) and runs hs.Server;
// target has passed servable.
func (p *Proxy) connect(ctx context.Context, target protocols.Target, hs protocols.Handshaker) (net.Conn, protocols.Info, *Error) {
	d := p.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	if target.Dial != nil {
		// A transport of its own (libvirt's console stream), as secure as
		// the connection it runs over.
		raw, err := target.Dial(ctx)
		if err != nil {
			return nil, protocols.Info{}, consoleFail(target, err, "unreachable")
		}
		return p.serverHandshake(ctx, hs, raw, target)
	}
	var cfg *tls.Config
	if !target.Insecure || target.TLSTunnel {
		cfg = p.TLSConfig(target.Host()) // not nil: servable checked
	}
	raw, err := tunnel.DialTarget(ctx, d, target, cfg)
	if err != nil {
		return nil, protocols.Info{}, consoleFail(target, p.explain(err, target), "unreachable")
	}
	return p.serverHandshake(ctx, hs, raw, target)
}

// serverHandshake runs QEMU's side of the handshake on a dialled conn.
func (p *Proxy) serverHandshake(ctx context.Context, hs protocols.Handshaker, raw net.Conn, target protocols.Target) (net.Conn, protocols.Info, *Error) {
	conn, info, err := hs.Server(ctx, raw, target)
	if err != nil {
		raw.Close()
		err = p.explain(err, target)
		return nil, protocols.Info{}, consoleFail(target, err, "handshake failed")
	}
	return conn, info, nil
}

func (p *Proxy) explain(err error, t protocols.Target) error {
	if p.ExplainTLS == nil {
		return err
	}
	return p.ExplainTLS(err, "QEMU at "+t.Address)
}
