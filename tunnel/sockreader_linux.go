package tunnel

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sockReader reads a socket for one Join direction through the socket's
// RawConn, so that the direction takes a buffer only once there is data:
// the read(2) that finds nothing (EAGAIN) gives the direction's buffers
// back before the runtime's poller waits (honouring the read deadline,
// woken by Close), and the one after the wake-up takes one again. That is
// the same two syscalls per wake-up as the conn's Read (which also tries,
// then waits, then reads): waiting holding nothing costs two pool
// operations, not a syscall. Measured with strace -c on 20,000 64-byte
// echo round trips through Join (BenchmarkJoinTCP/echo): 8.0 read(2)s
// per round trip, 4.0 of them EAGAIN, as with Read; a WaitRead by a
// zero-timeout ppoll before Read instead costs 2 ppolls per round trip
// more (18.6 syscalls in all instead of 16.5).
type sockReader struct {
	conn  net.Conn
	rc    syscall.RawConn
	bufs  *copyBuf
	read1 func(fd uintptr) bool // s.readFD, made once: no allocation per read

	// The outcome of the last readFD.
	n     int
	errno syscall.Errno
}

// newSockReader returns a sockReader of c filling bufs, or nil if c is
// not a stream socket.
func newSockReader(c net.Conn, bufs *copyBuf) *sockReader {
	if !isStreamSocket(c) {
		return nil
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	s := &sockReader{conn: c, rc: rc, bufs: bufs}
	s.read1 = s.readFD
	return s
}

// read reads into s.bufs.buf() as the conn's Read would, and returns that
// buffer with what it read.
func (s *sockReader) read() ([]byte, int, error) {
	if err := s.rc.Read(s.read1); err != nil {
		// Closed, or the read deadline: Read says so in its own words.
		buf := s.bufs.buf()
		n, err := s.conn.Read(buf)
		return buf, n, err
	}
	buf := s.bufs.buf()
	if s.n <= 0 || s.errno != 0 {
		return buf, 0, s.err()
	}
	return buf, s.n, nil
}

// err is the error of a read(2) that returned s.n and s.errno, as the
// conn's Read reports it. Not inlined, to keep read's frame small: the
// goroutine waits in it, and a stack whose waiting frames use a quarter
// of it or more does not shrink at GC (measured: a direction that wrote
// to a websocket kept 4 KiB instead of 2).
//
//go:noinline
func (s *sockReader) err() error {
	if s.errno == 0 {
		return io.EOF
	}
	return &net.OpError{Op: "read", Net: s.conn.LocalAddr().Network(),
		Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: os.NewSyscallError("read", s.errno)}
}

// readFD makes one non-blocking read(2) of fd into the direction's
// buffer. EAGAIN: it gives the buffers back and has the poller wait (which
// also makes it safe on the edge-triggered poller: the read that finds
// nothing comes after the poller was armed). Otherwise it keeps the
// outcome for read.
func (s *sockReader) readFD(fd uintptr) bool {
	buf := s.bufs.buf()
	for {
		n, _, errno := syscall.Syscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			s.bufs.releaseAll()
			if testHookWaiting != nil {
				testHookWaiting(s.bufs)
			}
			return false
		}
		s.n, s.errno = int(n), errno
		return true
	}
}
