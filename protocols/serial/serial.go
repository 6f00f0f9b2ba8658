// Package serial is the protocol layer of byte-stream consoles (serial
// and console chardevs). There is nothing to negotiate, but QEMU's TLS
// chardevs need care with how bytes are framed toward them.
//
// Observed with QEMU 7.2 (tests in this package reproduce it): a TLS
// socket chardev hands its frontend only as many bytes as the frontend
// accepts at once — one for the monitor and for a 16550 UART whose FIFO
// is off — and the rest of the decrypted TLS record waits in the TLS
// library's buffer until more bytes arrive on the socket, because QEMU
// polls only the socket. A pasted line stalls after its first byte. Each
// byte in its own TLS record is always consumed: so toward a TLS chardev
// the Handshaker writes one byte per record. Console input is typed or
// pasted text, so the cost (about 22 bytes of framing per byte) is small.
package serial

import (
	"context"
	"net"

	"github.com/virtconsole/virtconsole/protocols"
)

// Handshaker is the protocols.Handshaker of serial and console targets.
type Handshaker struct{}

// Server returns the QEMU conn, wrapped to write one byte per TLS record
// when the target speaks TLS.
func (Handshaker) Server(_ context.Context, server net.Conn, t protocols.Target) (net.Conn, protocols.Info, error) {
	if !t.TLSFromFirstByte() {
		return server, protocols.Info{}, nil
	}
	return ByteRecords(server), protocols.Info{Auth: "tls"}, nil
}

// Client returns both conns unchanged.
func (Handshaker) Client(_ context.Context, client, server net.Conn) (net.Conn, net.Conn, error) {
	return client, server, nil
}

// ByteRecords wraps a TLS conn so that every Write sends each byte in its
// own TLS record (crypto/tls sends one record per Write of up to a record's
// size). Reads, deadlines and CloseWrite pass through.
func ByteRecords(c net.Conn) net.Conn { return &byteRecords{c} }

type byteRecords struct{ net.Conn }

func (b *byteRecords) Write(p []byte) (int, error) {
	for i := range p {
		if _, err := b.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// CloseWrite half-closes the wrapped conn when it can.
func (b *byteRecords) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
