package wsconn

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// lazyRead is ReadLazy's state, shared with its read function, which is
// made once per Conn so that reading allocates nothing.
type lazyRead struct {
	take    func() []byte
	release func()
	fn      func(fd uintptr) bool

	// The outcome of the last read(2): into buf, behind k bytes of
	// pending input.
	buf   []byte
	k     int
	n     int
	errno syscall.Errno
}

// lazyReader sets c up for ReadLazy when nc is a TCP conn.
func (c *Conn) lazyReader(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	c.rc = rc
	c.lazy.fn = c.readFD
}

// ReadLazy is Read for a copy loop that holds no buffer while the Conn
// waits for its peer: take returns the buffer to read into (at least 256
// bytes; it may be called again after release), and release gives it
// back, which ReadLazy does before it waits. It returns the buffer it read
// into, with n bytes of data at its front. Control frames that arrive
// meanwhile (a keepalive's pong, a ping) are handled without returning.
//
// Over TCP it reads the socket through its RawConn: the read(2) that
// finds nothing (EAGAIN) releases the buffer and comes after the runtime's
// poller was armed, so waiting costs no system call more than Read. Over
// TLS, whose conn keeps record buffers of its own anyway, it is take and
// Read.
func (c *Conn) ReadLazy(take func() []byte, release func()) (buf []byte, n int, err error) {
	if c.rc == nil {
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
		c.lazy.take, c.lazy.release = take, release
		err := c.rc.Read(c.lazy.fn)
		c.lazy.take, c.lazy.release = nil, nil
		if err != nil { // closed, or a deadline
			c.rerr = c.readError(c.opError("read", err))
			return nil, 0, c.rerr
		}
		buf, k, m, errno := c.lazy.buf, c.lazy.k, c.lazy.n, c.lazy.errno
		c.lazy.buf = nil
		c.dec.npend = 0
		var rerr error
		if errno != 0 || m <= 0 {
			m, rerr = 0, c.rawError(errno)
		}
		n, again := c.decodeInput(buf[:k+m], rerr)
		if again {
			continue // control frames only: wait again, holding nothing
		}
		if n > 0 {
			return buf, n, nil
		}
		return buf, 0, c.rerr
	}
}

// readFD makes one non-blocking read(2) of fd into the taken buffer,
// behind the pending input. EAGAIN: it releases the buffer and has the
// poller wait (the read that found nothing came after the poller was
// armed, which is what makes this safe on an edge-triggered poller).
func (c *Conn) readFD(fd uintptr) bool {
	b := c.lazy.take()
	k := copy(b, c.dec.pend[:c.dec.npend])
	for {
		n, _, errno := syscall.Syscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[k])), uintptr(len(b)-k))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			c.lazy.release()
			return false
		}
		c.lazy.buf, c.lazy.k, c.lazy.n, c.lazy.errno = b, k, int(n), errno
		return true
	}
}

// rawError is the error of a read(2) that returned 0 (io.EOF) or errno,
// as the conn's Read would have reported it. Out of line: the waiting
// goroutine's frames stay small, so its stack can shrink.
//
//go:noinline
func (c *Conn) rawError(errno syscall.Errno) error {
	if errno == 0 {
		return io.EOF
	}
	return &net.OpError{Op: "read", Net: "tcp", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
}
