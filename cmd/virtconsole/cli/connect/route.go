package connect

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	pserial "github.com/virtconsole/virtconsole/protocols/serial"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// Route is how a client reaches one console, resolved once from the
// flags and DOMAIN (Options.Resolve): through the proxy with a token, or
// straight to QEMU with credentials, a TLS policy and a timeout. Dial
// opens a connection along it, as often as needed and concurrently (vnc
// and spice dial once per viewer connection). Close releases what
// resolving kept (a libvirt connection for a console stream).
type Route struct {
	Mode Mode
	Kind protocols.Kind

	proxy  *proxyLeg  // ProxyToken, ProxyDomain
	direct *directLeg // DirectTarget, DirectDomain
}

// Dial opens a connection to the console along r: through the proxy, a
// websocket carrying a token; directly, QEMU's connection once this side
// of the protocol handshake is done (for a viewer, Conn.Attach does the
// other side). A failure is a *cmdutil.DialError whose cause says more
// (refused, TLS) when there is more to say.
func (r *Route) Dial(ctx context.Context) (*Conn, error) {
	if r.proxy != nil {
		return r.proxy.dial(ctx)
	}
	return r.direct.dial(ctx)
}

// Close releases what r holds; Dial must not be called afterwards.
func (r *Route) Close() error {
	if r.direct != nil && r.direct.close != nil {
		return r.direct.close()
	}
	return nil
}

// Conn is a console connection opened along a Route, ready to carry the
// viewer's side of its protocol.
type Conn struct {
	net.Conn
	// hs is the handshake's viewer leg in direct mode; nil through the
	// proxy, which did it.
	hs       protocols.Handshaker
	deadline time.Time // of the direct handshake, for Attach
	release  func()    // ends the token's session (proxy)
	once     sync.Once
}

// Attach runs the viewer's leg of the handshake on viewer (direct mode:
// the viewer gets the protocol with no authentication; through the proxy
// there is nothing to do) and returns the conns to join. It shares Dial's
// deadline. On failure c is closed.
func (c *Conn) Attach(ctx context.Context, viewer net.Conn) (viewerOut, consoleOut net.Conn, err error) {
	if c.hs == nil {
		return viewer, c, nil
	}
	if !c.deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, c.deadline)
		defer cancel()
	}
	viewerOut, consoleOut, err = c.hs.Client(ctx, viewer, c.Conn)
	if err != nil {
		c.Close()
		return nil, nil, &cmdutil.DialError{Err: err}
	}
	return viewerOut, consoleOut, nil
}

// Close closes the connection and ends its token's session.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	if c.release != nil {
		c.once.Do(c.release)
	}
	return err
}

// CloseWrite passes a half-close on (tunnel.Join), or closes.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// directLeg is a route straight to QEMU.
type directLeg struct {
	target  protocols.Target
	creds   *tlscreds.Creds // nil: no TLS toward QEMU
	policy  tlscreds.Policy
	timeout time.Duration
	// peer names the console in messages: "QEMU at ADDR", or "serial 0
	// of DOMAIN at ADDR".
	peer string
	// stream, if set, opens a console that is no network address (a pty
	// through libvirt's console stream); close releases what it uses.
	stream func(context.Context) (net.Conn, error)
	close  func() error
}

// handshaker returns a fresh handshaker for one connection (SPICE's keeps
// the password between its legs).
func (d *directLeg) handshaker() protocols.Handshaker {
	switch d.target.Kind {
	case protocols.KindVNC:
		h := &vnc.Handshaker{}
		if d.creds != nil {
			h.TLSConfig = d.tlsConfig
		}
		return h
	case protocols.KindSPICE:
		// TLS toward QEMU is from the first byte (dialled below).
		return &spice.Handshaker{}
	}
	return pserial.Handshaker{}
}

func (d *directLeg) tlsConfig(host string) *tls.Config {
	return d.creds.ClientConfig(d.policy, host)
}

// dial connects to QEMU and runs this side of the handshake, within the
// handshake timeout.
func (d *directLeg) dial(ctx context.Context) (*Conn, error) {
	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	raw, err := d.connect(ctx)
	if err != nil {
		return nil, err
	}
	hs := d.handshaker()
	server, _, err := hs.Server(ctx, raw, d.target)
	if err != nil {
		raw.Close()
		return nil, &cmdutil.DialError{Err: err}
	}
	deadline, _ := ctx.Deadline()
	return &Conn{Conn: server, hs: hs, deadline: deadline}, nil
}

// connect opens the connection to QEMU: the console stream, TCP, or TLS
// from the first byte.
func (d *directLeg) connect(ctx context.Context) (net.Conn, error) {
	if d.stream != nil {
		c, err := d.stream(ctx)
		if err != nil {
			return nil, &cmdutil.DialError{Err: err}
		}
		return c, nil
	}
	var cfg *tls.Config
	if d.creds != nil {
		cfg = d.tlsConfig(d.target.Host())
	}
	c, err := tunnel.DialTarget(ctx, nil, d.target, cfg)
	if err == nil {
		return c, nil
	}
	if d.creds != nil && d.target.TLSFromFirstByte() {
		err = tlscreds.ExplainHandshakeError(err, d.creds, "QEMU at "+d.target.Address)
	}
	what := d.peer + " unreachable: "
	if cmdutil.IsTLS(err) {
		what = d.peer + ": "
	}
	return nil, &cmdutil.DialError{Msg: what + err.Error(), Err: err}
}
