package vnc

import (
	"github.com/virtconsole/virtconsole/protocols"

	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"unicode"
)

// peer reads and writes one leg's handshake messages (see
// protocols.Peer: exact reads, one-line errors).
type peer struct{ protocols.Peer }

func newPeer(ctx context.Context, conn net.Conn, name string) *peer {
	return &peer{protocols.Peer{Ctx: ctx, Conn: conn, Name: name, Proto: "vnc", Stage: "handshake", Order: binary.BigEndian}}
}

// readReason reads a u32 length and that many bytes (RFC 6143 §7.1.2),
// keeping at most MaxReasonLen of them, made printable on one line.
func (p *peer) readReason(what string) (string, error) {
	n, err := p.ReadU32(what + " length")
	if err != nil {
		return "", err
	}
	cut := n > MaxReasonLen
	if cut {
		n = MaxReasonLen
	}
	b := make([]byte, n)
	if err := p.Read(b, what); err != nil {
		return "", err
	}
	s := cleanReason(string(b))
	if cut {
		s += " [cut]"
	}
	return s, nil
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
