package vnc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"unicode"
)

// peer reads and writes one leg's handshake messages. Reads are exact
// (io.ReadFull on the conn, no buffering), so that nothing is consumed
// beyond the message: bytes after the last one belong to the TLS layer
// or to the pass-through. Errors say which peer and which step failed.
type peer struct {
	ctx  context.Context
	conn net.Conn
	name string // "QEMU at 127.0.0.1:5901", "the viewer"
}

// read fills b, or explains why it could not (what: the message expected).
func (p *peer) read(b []byte, what string) error {
	if _, err := io.ReadFull(p.conn, b); err != nil {
		return p.ioError(err, "reading "+what)
	}
	return nil
}

func (p *peer) readU8(what string) (uint8, error) {
	var b [1]byte
	err := p.read(b[:], what)
	return b[0], err
}

func (p *peer) readU32(what string) (uint32, error) {
	var b [4]byte
	err := p.read(b[:], what)
	return binary.BigEndian.Uint32(b[:]), err
}

// readReason reads a u32 length and that many bytes (RFC 6143 §7.1.2),
// keeping at most MaxReasonLen of them, made printable on one line.
func (p *peer) readReason(what string) (string, error) {
	n, err := p.readU32(what + " length")
	if err != nil {
		return "", err
	}
	cut := n > MaxReasonLen
	if cut {
		n = MaxReasonLen
	}
	b := make([]byte, n)
	if err := p.read(b, what); err != nil {
		return "", err
	}
	s := cleanReason(string(b))
	if cut {
		s += " [cut]"
	}
	return s, nil
}

func (p *peer) write(b []byte, what string) error {
	if _, err := p.conn.Write(b); err != nil {
		return p.ioError(err, "sending "+what)
	}
	return nil
}

// ioError turns a read or write failure into a one-line error naming the
// peer and the step: a close, the handshake deadline, a cancellation.
func (p *peer) ioError(err error, step string) error {
	switch {
	case p.ctx.Err() != nil && errors.Is(p.ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("vnc: %s did not finish the handshake in time (stuck %s): %w", p.name, step, p.ctx.Err())
	case p.ctx.Err() != nil:
		return fmt.Errorf("vnc: handshake with %s stopped while %s: %w", p.name, step, p.ctx.Err())
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("vnc: %s did not finish the handshake in time (stuck %s): %w", p.name, step, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("vnc: %s closed the connection while %s: %w", p.name, step, err)
	}
	return fmt.Errorf("vnc: %s: %s: %w", p.name, step, err)
}

// cleanReason makes a peer's reason string safe for a one-line message:
// valid UTF-8, control characters as spaces, trimmed.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// parseVersion parses a ProtocolVersion message "RFB xxx.yyy\n" (three
// decimal digits each). ok is false when b is not of that form.
func parseVersion(b []byte) (major, minor int, ok bool) {
	if len(b) != versionLen || string(b[:4]) != "RFB " || b[7] != '.' || b[11] != '\n' {
		return 0, 0, false
	}
	digits := func(d []byte) (int, bool) {
		n := 0
		for _, c := range d {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	major, ok1 := digits(b[4:7])
	minor, ok2 := digits(b[8:11])
	return major, minor, ok1 && ok2
}

// rfbVersion is a protocol version this package speaks: 3, 7 or 8 (the
// minor number of 3.x).
type rfbVersion int

const (
	rfb33 rfbVersion = 3
	rfb37 rfbVersion = 7
	rfb38 rfbVersion = 8
)

func (v rfbVersion) message() string {
	switch v {
	case rfb37:
		return ProtocolVersion37
	case rfb38:
		return ProtocolVersion38
	}
	return ProtocolVersion33
}

func (v rfbVersion) String() string { return fmt.Sprintf("3.%d", int(v)) }

// quoteVersion shows a received version message in an error.
func quoteVersion(b []byte) string { return fmt.Sprintf("%q", b) }
