package spice

import (
	"context"
	"net"

	"github.com/virtconsole/virtconsole/protocols"
)

// Info.Auth values the Handshaker reports.
const (
	// AuthTicketTakeover: the proxy sent QEMU the resolver's password.
	AuthTicketTakeover = "spice-ticket-takeover"
	// AuthTicketRelay: the viewer's own ticket went to QEMU (QEMU has no
	// password, or the viewer knows it).
	AuthTicketRelay = "spice-ticket"
)

// Handshaker is the protocols.Handshaker of one SPICE connection (one
// channel): use a new one per connection. TLS toward QEMU is not its
// business: SPICE's TLS port is TLS from the first byte
// (protocols.Target.TLSFromFirstByte), so the caller dials it.
//
// Server only keeps the target's password (nothing can be said to QEMU
// before the viewer's link message). Client reads the viewer's link
// message, asks Admit, and runs Forward; on the main channel it returns a
// QEMU conn that reports the session id and channel list to OnMain (see
// WatchMain). A proxy with a Registry wires them as:
//
//	var lease *spice.Lease
//	h := &spice.Handshaker{
//		Admit: func(l *spice.Link) (err error) {
//			lease, err = registry.Admit(token, singleUse, l)
//			return err
//		},
//		OnMain: func(i spice.MainInfo) { lease.Observe(i) },
//	}
//	// … and lease.Close() (if lease != nil) when the connection ends.
type Handshaker struct {
	// Admit, if set, vets the viewer's link message before anything is
	// sent to QEMU. An error refuses the link: the viewer gets the link
	// error Code(err), and Client returns the error.
	Admit func(*Link) error
	// OnMain, if set, receives what the main channel's first messages
	// say (WatchMain's report). It runs on the goroutine reading from
	// QEMU.
	OnMain func(MainInfo)

	password string
}

var _ protocols.Handshaker = (*Handshaker)(nil)

// Server keeps t's password for the ticket step and returns qemu as is.
// A password SPICE cannot carry is refused here, before the viewer's
// websocket is accepted.
func (h *Handshaker) Server(_ context.Context, qemu net.Conn, t protocols.Target) (net.Conn, protocols.Info, error) {
	if err := checkPassword(t.Password); err != nil {
		return nil, protocols.Info{}, err
	}
	h.password = t.Password
	info := protocols.Info{Auth: AuthTicketRelay}
	if t.Password != "" {
		info.Auth = AuthTicketTakeover
	}
	return qemu, info, nil
}

// Client runs the link stage: ReadLink on viewer, Admit, Forward with the
// target's password. A refused or malformed link message is answered with
// a link error (Refuse) and never reaches QEMU. On the main channel the
// returned QEMU conn is WatchMain's, reporting to OnMain; otherwise both
// conns are returned as given. The exchange honours ctx's deadline.
func (h *Handshaker) Client(ctx context.Context, viewer, qemu net.Conn) (net.Conn, net.Conn, error) {
	link, raw, err := ReadLink(ctx, viewer)
	if err != nil {
		Refuse(ctx, viewer, Code(err))
		return nil, nil, err
	}
	if h.Admit != nil {
		if err := h.Admit(link); err != nil {
			Refuse(ctx, viewer, Code(err))
			return nil, nil, err
		}
	}
	info, err := Forward(ctx, viewer, qemu, link, raw, h.password)
	if err != nil {
		return nil, nil, err
	}
	if link.ChannelType == ChannelMain && h.OnMain != nil {
		qemu = WatchMain(qemu, info.MiniHeader, h.OnMain)
	}
	return viewer, qemu, nil
}
