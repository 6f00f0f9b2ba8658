package wsconn

import (
	"net"

	"github.com/virtconsole/virtconsole/tunnel/sockread"
)

// lazyRead is ReadLazy's state. behind is takeBehindPending, made once
// per Conn so that reading allocates nothing.
type lazyRead struct {
	sr     *sockread.Reader // the socket's; nil over TLS
	behind func() []byte
	take   func() []byte // the caller's, during ReadLazy
	buf    []byte        // the buffer taken, pending input in its first k bytes
	k      int
}

// lazyReader sets c up for ReadLazy when sock is a stream socket.
func (c *Conn) lazyReader(sock net.Conn) {
	if c.lazy.sr = sockread.New(sock); c.lazy.sr != nil {
		c.lazy.behind = c.takeBehindPending
	}
}

// takeBehindPending takes the caller's buffer and puts the pending input
// (an incomplete header or control frame) in front: the socket is read
// into the rest.
func (c *Conn) takeBehindPending() []byte {
	b := c.lazy.take()
	c.lazy.buf, c.lazy.k = b, copy(b, c.dec.pend[:c.dec.npend])
	return b[c.lazy.k:]
}

// ReadLazy is Read for a copy loop that holds no buffer while the Conn
// waits for its peer: take returns the buffer to read into (at least 256
// bytes; it may be called again after release), and release gives it
// back, which ReadLazy does before it waits. It returns the buffer it read
// into, with n bytes of data at its front. Control frames that arrive
// meanwhile (a keepalive's pong, a ping) are handled without returning.
//
// Over a socket it reads through package sockread: the read(2) that finds
// nothing (EAGAIN) releases the buffer and comes after the runtime's
// poller was armed, so waiting costs no system call more than Read. Over
// TLS, whose conn keeps record buffers of its own anyway, it is take and
// Read.
func (c *Conn) ReadLazy(take func() []byte, release func()) (buf []byte, n int, err error) {
	if c.lazy.sr == nil {
		buf = take()
		n, err = c.Read(buf)
		return buf, n, err
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rend > c.roff || c.rerr != nil || len(c.prefix) > 0 {
		buf = take()
		n, err = c.readLocked(buf)
		return buf, n, err
	}
	c.heard()
	for {
		c.lazy.take = take
		_, m, err := c.lazy.sr.ReadLazy(c.lazy.behind, release)
		buf, k := c.lazy.buf, c.lazy.k
		c.lazy.take, c.lazy.buf = nil, nil
		c.dec.npend = 0
		n, again := c.decodeInput(buf[:k+m], err)
		if again {
			continue // control frames only: wait again, holding nothing
		}
		if n > 0 {
			return buf, n, nil
		}
		return buf, 0, c.rerr
	}
}
