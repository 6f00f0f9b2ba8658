// Package tunnel is the protocol-agnostic plumbing of virtconsole: it
// layers connections (TCP, then TLS, then a websocket from package
// tunnel/wsconn) and joins two of them into one session.
//
// Every layer is a net.Conn that owns the net.Conn below it, the shape of
// tls.Client, so that no call site branches on "plain or TLS or websocket".
// Join works on any pair of them.
package tunnel

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/virtconsole/virtconsole/protocols"
)

// A Dialer opens network connections. *net.Dialer satisfies it; tests and
// the proxy substitute their own.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// DialTLS dials address over TCP with d (nil means a zero net.Dialer) and
// runs a TLS client handshake with cfg on top, both bounded by ctx.
//
// If cfg has no ServerName and does not skip verification, the host part of
// address is used, as tls.Dial does. On failure the TCP connection is
// closed. The conn below the TLS layer (the *tls.Conn's NetConn) has a
// Gather method that sends the records written during a call together
// (see gatherConn).
func DialTLS(ctx context.Context, d Dialer, address string, cfg *tls.Config) (net.Conn, error) {
	if d == nil {
		d = new(net.Dialer)
	}
	if cfg == nil {
		cfg = new(tls.Config)
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			host = address
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(&gatherConn{Conn: raw}, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", address, err)
	}
	return tc, nil
}

// DialTarget dials a console: with TLS from the first byte when t wants
// it (t.TLSFromFirstByte; cfg carries the credentials), plain TCP
// otherwise, where any TLS comes later inside the protocol (VeNCrypt).
// For a console that speaks first (VNC) it waits for the first byte and
// redials a silent connection (see dialGreeting).
func DialTarget(ctx context.Context, d Dialer, t protocols.Target, cfg *tls.Config) (net.Conn, error) {
	if t.TLSFromFirstByte() {
		return DialTLS(ctx, d, t.Address, cfg)
	}
	if d == nil {
		d = new(net.Dialer)
	}
	if greetsFirst(t) {
		return dialGreeting(ctx, d, t.Address)
	}
	return d.DialContext(ctx, "tcp", t.Address)
}
