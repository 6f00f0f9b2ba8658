package transport

import (
	"encoding/binary"
	"fmt"
	"net"
)

// Bounds of a remote-protocol packet's length word (which counts itself):
// the 4-byte length and the 24-byte header at least, and libvirt's
// VIR_NET_MESSAGE_MAX of payload at most.
const (
	MinPacket = 4 + 24
	MaxPacket = 4 + 24 + 32<<20
)

// Framed returns a Dialer whose conns check each packet's length before
// go-libvirt's socket sees it: the socket allocates whatever length the
// peer sends, and panics (killing the process) on one shorter than a
// header. A bad length ends the connection instead. Every go-libvirt
// connection we make (the resolver's and admin's, console streams) goes
// through it.
func Framed(d Dialer) Dialer { return framedDialer{d} }

type framedDialer struct{ Dialer }

func (d framedDialer) Dial() (net.Conn, error) {
	c, err := d.Dialer.Dial()
	if err != nil {
		return nil, err
	}
	return &framedConn{Conn: c}, nil
}

// framedConn is a net.Conn whose reads never cross a packet boundary, so
// that a packet's length is checked before any of its bytes are passed on.
type framedConn struct {
	net.Conn
	prefix [4]byte
	have   int    // bytes of prefix read
	left   uint32 // bytes of the current packet after its length word
	err    error  // sticky framing error
}

func (c *framedConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.left > 0 {
		if uint32(len(p)) > c.left {
			p = p[:c.left]
		}
		n, err := c.Conn.Read(p)
		c.left -= uint32(n)
		return n, err
	}
	if len(p) > 4-c.have {
		p = p[:4-c.have]
	}
	n, err := c.Conn.Read(p)
	copy(c.prefix[c.have:], p[:n])
	c.have += n
	if c.have < 4 {
		return n, err
	}
	c.have = 0
	l := binary.BigEndian.Uint32(c.prefix[:])
	if l < MinPacket || l > MaxPacket {
		// No bytes with the error: io.ReadFull would drop the error.
		c.err = fmt.Errorf("libvirtd sent a packet of %d bytes; want %d to %d", l, MinPacket, MaxPacket)
		c.Conn.Close()
		return 0, c.err
	}
	c.left = l - 4
	return n, err
}
