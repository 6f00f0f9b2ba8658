// Package sockread reads a stream socket through its RawConn, taking a
// buffer only once the socket has data, so that a copy loop waiting on an
// idle connection holds none. Both tunnel.Join (for sockets) and
// tunnel/wsconn (for the socket under a websocket) read this way.
package sockread

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// ErrIdle is ReadLazy's error, from a Reader given SetIdle, when its
// socket had no input for about that long: nothing was read, no buffer
// is held, and the conn is as it was (no read deadline).
var ErrIdle = errors.New("sockread: socket idle")

// Reader reads a stream socket lazily through its RawConn: it takes a buffer only once the socket has data. The read(2)
// that finds nothing (EAGAIN) releases the buffer before the runtime's
// poller waits (honouring the read deadline, woken by Close), and the one
// after the wake-up takes one again. That is the same two syscalls per
// wake-up as the conn's Read (which also tries, then waits, then reads):
// waiting holding nothing costs two pool operations, not a syscall.
// Measured with strace -c on 20,000 64-byte echo round trips through Join
// (BenchmarkJoinTCP/echo): 8.0 read(2)s per round trip, 4.0 of them
// EAGAIN, as with Read; a zero-timeout ppoll before Read instead costs 2
// ppolls per round trip more (18.6 syscalls in all instead of 16.5), and a
// MSG_PEEK look takes a pending reset, which Read then reports as EOF.
//
// One goroutine reads a Reader at a time.
type Reader struct {
	conn net.Conn
	rc   syscall.RawConn
	fn   func(fd uintptr) bool // s.readFD, made once: no allocation per read

	// The buffer functions of the ReadLazy in progress.
	take    func() []byte
	release func()

	// The outcome of the last readFD.
	buf   []byte
	n     int
	errno syscall.Errno

	// SetIdle's: the idle time, the read deadline this Reader last set
	// to watch for it, and whether the ReadLazy in progress found the
	// socket empty (so that its deadline's expiry means idle).
	idle  time.Duration
	dl    time.Time
	empty bool
}

// New returns a Reader of c, or nil if c is not a stream socket
// (*net.TCPConn, a stream *net.UnixConn).
func New(c net.Conn) *Reader {
	if !isStream(c) {
		return nil
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	s := &Reader{conn: c, rc: rc}
	s.fn = s.readFD
	return s
}

// SetIdle makes ReadLazy return ErrIdle once the socket has had no input
// for between d/2 and d (d > 0; 0 turns it off again), so that its caller
// can wait for it elsewhere (package park) instead of holding a
// goroutine in the runtime's poller. The Reader watches for it with the
// conn's read deadline, moved at most once per d/2 as input comes: from
// then on nobody else may set that deadline.
func (s *Reader) SetIdle(d time.Duration) {
	s.idle = d
	if d <= 0 && !s.dl.IsZero() {
		s.dl = time.Time{}
		s.conn.SetReadDeadline(time.Time{})
	}
}

// RawConn is the socket's, for waiting on it elsewhere (package park).
func (s *Reader) RawConn() syscall.RawConn { return s.rc }

// ParkableSocket returns s: the Reader of a socket that can be waited
// for elsewhere (see tunnel.WithParking). A conn type that passes
// ReadLazy on to a Reader passes this on too.
func (s *Reader) ParkableSocket() *Reader { return s }

// ReadLazy reads into a buffer of take's as the conn's Read would, and
// returns that buffer with what it read. take may be called again after
// release, and must return the same buffer until release. With SetIdle,
// it may instead return ErrIdle, holding nothing.
func (s *Reader) ReadLazy(take func() []byte, release func()) ([]byte, int, error) {
	s.take, s.release = take, release
	s.empty = false
	err := s.rc.Read(s.fn)
	for err != nil && s.idle > 0 && s.expired(err) {
		if s.empty {
			s.take, s.release = nil, nil
			return nil, 0, ErrIdle
		}
		err = s.rc.Read(s.fn) // the deadline had passed while input came: read it
	}
	s.take, s.release = nil, nil
	if err != nil {
		// Closed, or the read deadline: Read says so in its own words, at
		// once.
		buf := take()
		n, err := s.conn.Read(buf)
		return buf, n, err
	}
	buf := s.buf
	s.buf = nil
	if s.n <= 0 || s.errno != 0 {
		return buf, 0, s.err()
	}
	return buf, s.n, nil
}

// err is the error of a read(2) that returned s.n and s.errno, as the
// conn's Read reports it. Not inlined, to keep ReadLazy's frame small: the
// goroutine waits in it, and a stack whose waiting frames use a quarter
// of it or more does not shrink at GC (measured: a direction that wrote
// to a websocket kept 4 KiB instead of 2).
//
//go:noinline
func (s *Reader) err() error {
	if s.errno == 0 {
		return io.EOF
	}
	return &net.OpError{Op: "read", Net: s.conn.LocalAddr().Network(),
		Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: os.NewSyscallError("read", s.errno)}
}

// readFD makes one non-blocking read(2) of fd into a taken buffer. EAGAIN:
// it releases the buffer and has the poller wait (which also makes it
// safe on the edge-triggered poller: the read that finds nothing comes
// after the poller was armed). Otherwise it keeps the outcome for
// ReadLazy.
func (s *Reader) readFD(fd uintptr) bool {
	buf := s.take()
	for {
		n, _, errno := syscall.Syscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			s.release()
			if s.idle > 0 {
				s.watchIdle()
			}
			return false
		}
		s.buf, s.n, s.errno = buf, int(n), errno
		return true
	}
}

// watchIdle runs when the socket is found empty: it sets the read
// deadline that ends the wait as idle, unless the one set before ends
// late enough (at least idle/2 from now): a deadline per wait would cost
// a timer update on every keystroke.
func (s *Reader) watchIdle() {
	s.empty = true
	now := time.Now()
	if s.dl.Sub(now) < s.idle/2 {
		s.dl = now.Add(s.idle)
		s.conn.SetReadDeadline(s.dl)
	}
}

// expired reports whether err is the expiry of the idle deadline, and if
// so clears it.
//
//go:noinline
func (s *Reader) expired(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	s.dl = time.Time{}
	s.conn.SetReadDeadline(time.Time{})
	return true
}

// isStream reports whether c is a socket whose zero-byte read is EOF, as
// Read reports it: TCP, or a Unix socket but a datagram one.
func isStream(c net.Conn) bool {
	switch c := c.(type) {
	case *net.TCPConn:
		return true
	case *net.UnixConn:
		a, _ := c.LocalAddr().(*net.UnixAddr)
		return a != nil && (a.Net == "unix" || a.Net == "unixpacket")
	}
	return false
}
