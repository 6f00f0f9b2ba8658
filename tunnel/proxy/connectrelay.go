package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel"
)

// The passthrough CONNECT gateway (ConnectGateway.Passthrough): each
// tunnel is relayed, bytes as they come, to the SPICE TLS port of the
// console its credential opens. The viewer's TLS is QEMU's; the proxy
// reads nothing of it, so it cannot tell one session's channels from
// another's: a single-use token opens a grant (relayGrant) that lets its
// first client address open more tunnels to the same console for
// GrantTTL.

// openRelay is the passthrough gateway's openFunc for the client at
// address client: a live grant's console, or the token's, resolved and
// (single-use) spent, with a grant opened for client.
func (g *ConnectGateway) openRelay(ctx context.Context, token string, asked protocols.Role, client string) (*upstream, *Error) {
	p := g.Proxy
	gr, herr := g.granted(token, client)
	if herr != nil {
		return nil, herr
	}
	if gr != nil {
		return g.relay(ctx, gr.target, gr.id)
	}
	target, herr := p.resolve(ctx, token)
	if herr != nil {
		return nil, herr
	}
	target, singleUse, herr := p.admit(ctx, token, target, asked, relayable)
	if herr != nil {
		return nil, herr
	}
	id := "relay-" + newSessionID()
	up, herr := g.relay(ctx, target, id)
	if herr != nil {
		if singleUse {
			p.refund(ctx, token)
		}
		return nil, herr
	}
	if singleUse {
		g.openGrant(token, &relayGrant{id: id, client: client, target: target, expires: time.Now().Add(g.grantTTL())})
	}
	return up, nil
}

func (g *ConnectGateway) grantTTL() time.Duration {
	if g.GrantTTL > 0 {
		return g.GrantTTL
	}
	return PassthroughGrantTTL
}

// granted returns token's live grant if client may use it; nil if token
// has none (any more). Another client address is refused as an unknown
// token is (407): the grant is bound to the first one.
func (g *ConnectGateway) granted(token, client string) (*relayGrant, *Error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.grants[token]
	switch {
	case gr == nil:
		return nil, nil
	case !time.Now().Before(gr.expires):
		delete(g.grants, token)
		return nil, nil
	case gr.client != client:
		return nil, fail(http.StatusNotFound, nil, "the token was spent by another client address (a passthrough grant is bound to its first client)")
	}
	return gr, nil
}

// openGrant records token's grant, dropping expired ones.
func (g *ConnectGateway) openGrant(token string, gr *relayGrant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	for t, old := range g.grants {
		if !now.Before(old.expires) {
			delete(g.grants, t)
		}
	}
	if g.grants == nil {
		g.grants = map[string]*relayGrant{}
	}
	g.grants[token] = gr
}

// relayable refuses a console a passthrough gateway cannot relay to: it
// needs a SPICE TLS port, reached over TCP.
func relayable(t protocols.Target) *Error {
	if t.Kind != protocols.KindSPICE || t.Insecure || t.TLSTunnel || t.Dial != nil {
		return consoleFail(t, nil, "is not a SPICE TLS port, the only console a passthrough SPICE CONNECT gateway relays to")
	}
	return nil
}

// relay dials target's SPICE TLS port over plain TCP: the viewer runs
// TLS with QEMU through it.
func (g *ConnectGateway) relay(ctx context.Context, target protocols.Target, id string) (*upstream, *Error) {
	var d tunnel.Dialer = g.Proxy.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	conn, err := d.DialContext(ctx, "tcp", target.Address)
	if err != nil {
		return nil, consoleFail(target, err, "unreachable")
	}
	return &upstream{target: target, conn: conn, hs: protocols.PassThrough{}, release: func() {},
		info: protocols.Info{Auth: "passthrough", Session: id}}, nil
}

// acceptRelay answers the CONNECT with 200 and hands the tunnel, as it
// is, to the session: the passthrough gateway's acceptFunc.
func (g *ConnectGateway) acceptRelay(ctx context.Context, w http.ResponseWriter, r *http.Request, log *slog.Logger, up *upstream, sess *Session, arrived time.Time) (client, server net.Conn, ok bool) {
	p := g.Proxy
	conn, raw, err := openTunnel(ctx, w, r)
	if err == nil && !p.acceptingSessions() {
		conn.Close()
		err = errors.New(reasonShutdown)
	}
	if err != nil {
		up.closeConn()
		log.Warn("CONNECT tunnel not opened", "err", err)
		p.startFailed(sess, arrived, fmt.Errorf("CONNECT tunnel not opened: %w", err))
		return nil, nil, false
	}
	conn.SetDeadline(time.Time{})
	return raw, up.conn, true
}

// serveConsoleInfo answers a passthrough gateway's POST InfoPath, whose
// Proxy-Authorization is a CONNECT's: what a .vv file for that token's
// console needs (ConnectInfo with QEMU's certificate subject, read from
// a TLS handshake with it, and the SPICE password). The token is not
// spent; an unknown one counts toward the refused-token limit.
func (g *ConnectGateway) serveConsoleInfo(w http.ResponseWriter, r *http.Request, log *slog.Logger) {
	p := g.Proxy
	host := p.clientAddr(r)
	token := ConnectToken(r)
	if token == "" {
		p.refuse(w, r, log, p.refused(host, fail(http.StatusUnauthorized, nil, "no credential: send Proxy-Authorization: Basic with the token, base64url-encoded, as the password")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	i, target, herr := g.consoleInfo(ctx, token)
	if herr != nil {
		p.refuseUnknown(w, r, log, host, herr)
		return
	}
	log.Info("passthrough console info given", "token_id", tokenID(token), "console", target.Address)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(i)
}

// consoleInfo is what a passthrough .vv file for token's console needs
// (the token is not spent), and the console.
func (g *ConnectGateway) consoleInfo(ctx context.Context, token string) (ConnectInfo, protocols.Target, *Error) {
	p := g.Proxy
	target, herr := p.resolve(ctx, token)
	if herr == nil {
		herr = relayable(target)
	}
	if herr == nil {
		herr = p.servable(target)
	}
	if herr != nil {
		return ConnectInfo{}, target, herr
	}
	subject, err := g.consoleSubject(ctx, target)
	if err != nil {
		return ConnectInfo{}, target, consoleFail(target, p.explain(err, target), "certificate not read")
	}
	i := ConnectInfo{Host: ConnectHost, TLSPort: ConnectPort, HostSubject: subject, Passthrough: true, Password: target.Password}
	if g.ConsoleCA != nil {
		i.CA = string(g.ConsoleCA())
	}
	return i, target, nil
}

// Info is what a .vv file for token's console needs of the gateway: its
// GET InfoPath answer, or for a passthrough gateway its POST InfoPath
// answer for token (which is not spent). The error is an *Error.
func (g *ConnectGateway) Info(ctx context.Context, token string) (ConnectInfo, error) {
	if !g.Passthrough {
		i, err := g.info()
		if err != nil {
			return i, fail(http.StatusInternalServerError, err, "the gateway's certificate cannot be described")
		}
		return i, nil
	}
	i, _, herr := g.consoleInfo(ctx, token)
	if herr != nil {
		return i, herr
	}
	return i, nil
}

// consoleSubject is the subject of target's TLS certificate as spice-gtk's
// host-subject wants it, read from a TLS handshake with the proxy's
// client credentials (which check it against the proxy's CA).
func (g *ConnectGateway) consoleSubject(ctx context.Context, target protocols.Target) (string, error) {
	c, err := tunnel.DialTLS(ctx, g.Proxy.Dialer, target.Address, g.Proxy.TLSConfig(target.Host()))
	if err != nil {
		return "", err
	}
	defer c.Close()
	certs := c.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "", errors.New("no certificate")
	}
	return SPICESubject(certs[0].RawSubject)
}
