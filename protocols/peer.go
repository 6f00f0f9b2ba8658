package protocols

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

// Peer reads and writes one leg of a handshake. Reads are exact
// (io.ReadFull on the conn, no buffering), so that nothing is consumed
// beyond the message: bytes after the last one belong to a TLS layer or
// to the pass-through. Failures become one-line errors naming the
// protocol, the peer and the step.
type Peer struct {
	Ctx  context.Context
	Conn net.Conn
	// Name is the peer in messages: "the viewer", "QEMU at 127.0.0.1:5901".
	Name string
	// Proto prefixes errors ("vnc"); Stage names the exchange in them
	// ("handshake", "link stage").
	Proto, Stage string
	// Order is the protocol's integer byte order.
	Order binary.ByteOrder
}

// Read fills b, or explains why it could not (what: the message expected).
func (p *Peer) Read(b []byte, what string) error {
	if _, err := io.ReadFull(p.Conn, b); err != nil {
		return p.IOError(err, "reading "+what)
	}
	return nil
}

// ReadU8 reads one byte.
func (p *Peer) ReadU8(what string) (uint8, error) {
	var b [1]byte
	err := p.Read(b[:], what)
	return b[0], err
}

// ReadU32 reads a u32 in the protocol's byte order.
func (p *Peer) ReadU32(what string) (uint32, error) {
	var b [4]byte
	err := p.Read(b[:], what)
	return p.Order.Uint32(b[:]), err
}

// Write sends b, or explains why it could not.
func (p *Peer) Write(b []byte, what string) error {
	if _, err := p.Conn.Write(b); err != nil {
		return p.IOError(err, "sending "+what)
	}
	return nil
}

// IOError turns a read or write failure into a one-line error naming the
// peer and the step: a close, the deadline, a cancellation.
func (p *Peer) IOError(err error, step string) error {
	// The context first: cancelling it also expires the conn's deadline.
	switch ctxErr := p.Ctx.Err(); {
	case errors.Is(ctxErr, context.DeadlineExceeded):
		return fmt.Errorf("%s: %s did not finish the %s in time (stuck %s): %w", p.Proto, p.Name, p.Stage, step, ctxErr)
	case ctxErr != nil:
		return fmt.Errorf("%s: %s with %s stopped while %s: %w", p.Proto, p.Stage, p.Name, step, ctxErr)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: %s did not finish the %s in time (stuck %s): %w", p.Proto, p.Name, p.Stage, step, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s: %s closed the connection while %s: %w", p.Proto, p.Name, step, err)
	}
	return fmt.Errorf("%s: %s: %s: %w", p.Proto, p.Name, step, lineError{err})
}

// lineError keeps an error's text on one line.
type lineError struct{ err error }

func (e lineError) Error() string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, e.err.Error())
}

func (e lineError) Unwrap() error { return e.err }
