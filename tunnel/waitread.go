package tunnel

import "net"

// readWaiter is a source that can wait for data without a buffer: Join
// gives a readWaiter's buffers back before it waits, so that an idle
// direction holds none.
type readWaiter interface {
	// WaitRead blocks until a Read would return data or an error without
	// blocking, holding no buffer. An error means: call Read, which
	// reports it (a read deadline that expires during WaitRead is Read's
	// timeout error).
	WaitRead() error
}

// waiterFor returns how Join waits for c to be readable without a
// buffer, or nil if it cannot: c's own WaitRead, or for a socket of the
// standard library a peek at its file descriptor (sockWaiter). A
// *tls.Conn has none: it keeps its own record buffers anyway, so Join
// reads it holding its small buffer. Join asks once per conn, so the
// copy loop pays no type switch per read.
func waiterFor(c net.Conn) readWaiter {
	switch c := c.(type) {
	case readWaiter:
		return c
	case *net.TCPConn:
		return newSockWaiter(c)
	case *net.UnixConn:
		return newSockWaiter(c)
	}
	return nil
}
