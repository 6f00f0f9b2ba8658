package tunnel

import (
	"net"
	"syscall"
)

// readWaiter is a source that can wait for data without a buffer: Join
// gives a readWaiter's buffers back after a short read and waits in
// WaitRead, so that an idle direction holds none.
type readWaiter interface {
	// WaitRead blocks until a Read would return data or an error without
	// blocking, holding no buffer. An error means: call Read, which
	// reports it (a read deadline that expires during WaitRead is Read's
	// timeout error).
	WaitRead() error
}

// lazyReader is a source that takes a buffer only once it has input, and
// gives it back before it waits (a *wsconn.Conn: ReadLazy).
type lazyReader interface {
	ReadLazy(take func() []byte, release func()) (buf []byte, n int, err error)
}

// A direction reads its source one of four ways, chosen once at Join
// start so that the copy loop pays no type switch per read:
//
//   - a socket of the standard library (*net.TCPConn, a stream
//     *net.UnixConn) through a sockReader, which takes a buffer only once
//     the socket has data, at no syscall more than Read's;
//   - a lazyReader (a websocket), the same way through ReadLazy;
//   - a readWaiter: WaitRead holding nothing, then Read;
//   - anything else (a *tls.Conn, which keeps its own record buffers
//     anyway): Read, holding the small buffer while it waits.
func (j *joiner) chooseReaders() {
	for i, c := range j.conns {
		if j.socks[i] = newSockReader(c, &j.bufs[i]); j.socks[i] != nil {
			continue
		}
		if l, ok := c.(lazyReader); ok {
			bufs := &j.bufs[i]
			j.lazies[i], j.takes[i] = l, bufs.buf
			j.gives[i] = func() {
				bufs.releaseAll()
				if testHookWaiting != nil {
					testHookWaiting(bufs)
				}
			}
			continue
		}
		j.waiters[i], _ = c.(readWaiter)
	}
}

// ReadWaiterFor returns how a conn type that wraps c (to watch its errors,
// say) can let Join wait for it holding no buffer: the wrapper's own
// WaitRead method calls the WaitRead of what ReadWaiterFor returned when
// the wrapper was made, or returns nil at once if that was nil (Join then
// reads, holding its small buffer while Read waits, as for any conn).
//
// For a stream socket (*net.TCPConn, *net.UnixConn) WaitRead looks at the
// socket with a zero-timeout ppoll(2) before and after the poller waits:
// one syscall per wake-up more than Read alone. For a conn with a
// WaitRead method (a *wsconn.Conn) it is c. Otherwise (a *tls.Conn) nil.
func ReadWaiterFor(c net.Conn) interface{ WaitRead() error } {
	if isStreamSocket(c) {
		if w := newSockWaiter(c.(syscall.Conn)); w != nil {
			return w
		}
		return nil
	}
	if w, ok := c.(readWaiter); ok {
		return w
	}
	return nil
}

// isStreamSocket reports whether c is a socket whose zero-byte read is
// EOF, as Read reports it: TCP, or a Unix socket but a datagram one.
func isStreamSocket(c net.Conn) bool {
	switch c := c.(type) {
	case *net.TCPConn:
		return true
	case *net.UnixConn:
		a, _ := c.LocalAddr().(*net.UnixAddr)
		return a != nil && (a.Net == "unix" || a.Net == "unixpacket")
	}
	return false
}

// testHookWaiting, if set, is called with a direction's buffers as it
// starts waiting for its source to have data (sockReader or readWaiter).
var testHookWaiting func(*copyBuf)
