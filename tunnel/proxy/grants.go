package proxy

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/grant"
)

// Killers of sessions opened with a share link (Session.KilledBy); the
// viewer's websocket is closed with 1001 and the killer as the reason.
const (
	KilledByGrantExpiry = "grant expired"            // the grant's expiry passed
	KilledBySharedEnd   = "shared session has ended" // the session it shared ended
)

// GrantInfo is the share link (package grant) that admitted a session:
// its claims, never the grant itself.
type GrantInfo struct {
	JTI     string         // the grant's random ID
	By      string         // who minted it
	Role    protocols.Role // the most it allows
	Console string         // the console's token ID, for a console share
	Domain  string         // or its libvirt domain,
	Kind    protocols.Kind // its kind
	Index   int            // and its number of that kind
	Session string         // the shared session's ID, for a session share
	Expires time.Time
}

// grantShare is what a verified grant opens: a console, or a live
// session's console and the request that session belongs to.
type grantShare struct {
	claims  *grant.Claims
	parent  *request // the shared session's request; nil for a console share
	tokenID string   // the console's token ID (the shared session's for a session share)
}

// verifyGrant checks a grant presented as a token by req. It returns
// nil, nil when token is not a grant or the proxy takes none (GrantKey
// nil): it is then an ordinary token. A grant's request is not
// EndSessions': it holds no token of the resolver's.
func (p *Proxy) verifyGrant(req *request, token string) (*grant.Claims, *Error) {
	if p.GrantKey == nil || !grant.Is(token) {
		return nil, nil
	}
	c, err := p.GrantKey.Verify(token, time.Now())
	if err != nil {
		return nil, fail(http.StatusForbidden, err, "%s", err.Error())
	}
	p.mu.Lock()
	req.token = ""
	p.mu.Unlock()
	return c, nil
}

// openGrant is open for a verified grant: the console it names, or the
// console of the live session it names, with at most the grant's role
// (and the session's). Nothing is consumed: a grant is its own credential.
func (p *Proxy) openGrant(ctx context.Context, c *grant.Claims, token string, asked protocols.Role) (*upstream, *grantShare, *Error) {
	share := &grantShare{claims: c}
	var target protocols.Target
	if c.Session != "" {
		parent, sess, ok := p.liveSession(c.Session)
		if !ok {
			return nil, nil, fail(http.StatusForbidden, nil, "shared session has ended")
		}
		share.parent, share.tokenID, target = parent, sess.TokenID, sess.target
	} else {
		if p.GrantConsole == nil {
			return nil, nil, fail(http.StatusForbidden, nil, "console grants are not accepted by this proxy")
		}
		t, err := p.GrantConsole(ctx, c)
		switch {
		case errors.Is(err, resolver.ErrNotFound):
			return nil, nil, fail(http.StatusForbidden, err, "shared console no longer exists")
		case err != nil:
			return nil, nil, fail(http.StatusServiceUnavailable, err, "token resolver unavailable; try again later")
		}
		share.tokenID, target = c.Console, t
	}
	if target.Kind == protocols.KindSPICE {
		// A SPICE session spans connections that a grant could not follow
		// (each channel would be a new viewer), and has one viewer at most.
		return nil, nil, fail(http.StatusForbidden, nil, "share links are not supported for %s consoles", target.Kind)
	}
	if herr := p.servable(target); herr != nil {
		return nil, nil, herr
	}
	target.Role = target.Role.Least(c.Role).Least(asked)
	if herr := viewable(target); herr != nil {
		return nil, nil, herr
	}
	up, herr := p.dialTarget(ctx, target, token, false)
	if herr != nil {
		return nil, nil, herr
	}
	return up, share, nil
}

// liveSession returns the request of the live session id (a Session.ID,
// as Sessions lists them) and the session.
func (p *Proxy) liveSession(id string) (*request, *Session, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for req := range p.requests {
		if req.sess != nil && req.sess.ID == id && req.ctx.Err() == nil {
			return req, req.sess, true
		}
	}
	return nil, nil, false
}

// bindGrant ties req's life to its grant: it ends at the grant's expiry
// and, for a session share, when the shared session ends. Call stop when
// req ends.
func (p *Proxy) bindGrant(req *request, g *grantShare) (stop func()) {
	t := time.AfterFunc(time.Until(g.claims.Expiry().Add(grant.Skew)), func() { p.end(req, KilledByGrantExpiry) })
	if g.parent == nil {
		return func() { t.Stop() }
	}
	stopParent := context.AfterFunc(g.parent.ctx, func() { p.end(req, KilledBySharedEnd) })
	return func() { t.Stop(); stopParent() }
}

// end ends req, if it is still going, as killed by by.
func (p *Proxy) end(req *request, by string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if req.ctx.Err() == nil {
		req.killedBy = by
		req.cancel()
	}
}

// info is what the Session and the audit log say of g.
func (g *grantShare) info() *GrantInfo {
	return NewGrantInfo(g.claims)
}

// NewGrantInfo returns what the audit log may say of c.
func NewGrantInfo(c *grant.Claims) *GrantInfo {
	return &GrantInfo{JTI: c.JTI, By: c.By, Role: c.Role, Console: c.Console, Domain: c.Domain, Kind: c.Kind, Index: c.Index,
		Session: c.Session, Expires: c.Expiry()}
}
