package proxy

import (
	"context"
	"fmt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/serial"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/vnc"
)

// DefaultHandshake is the Handshake used when the hook is nil, the
// proxy's one table of handshakers: serial.Handshaker for serial and
// console targets, a vnc.Handshaker with TLSConfig (VeNCrypt) for VNC
// (view-only when t.Role is RoleView),
// and for SPICE a handshaker from the SPICE sessions that admits the
// connection into its session and releases it when it ends. Other kinds
// are an error.
func (p *Proxy) DefaultHandshake(_ context.Context, t protocols.Target, token string, singleUse bool) (protocols.Handshaker, func(), error) {
	switch t.Kind {
	case protocols.KindSerial, protocols.KindConsole:
		return serial.Handshaker{}, nil, nil
	case protocols.KindVNC:
		return &vnc.Handshaker{TLSConfig: p.TLSConfig, ViewOnly: t.Role == protocols.RoleView}, nil, nil
	case protocols.KindSPICE:
		return p.spice().Handshaker(t, token, singleUse)
	}
	return nil, nil, fmt.Errorf("no handshaker for console type %q", t.Kind)
}

// spice returns the SPICE sessions: the SPICE field, or the proxy's own.
func (p *Proxy) spice() *spice.Sessions {
	if p.SPICE != nil {
		return p.SPICE
	}
	p.spiceOnce.Do(func() { p.defaultSPICE = &spice.Sessions{Logger: p.Logger} })
	return p.defaultSPICE
}
