package wsconn

import (
	"net"
	"syscall"
	"unsafe"
)

// WaitRead blocks until a Read would find data, or an error, without
// waiting, and holds no buffer while it waits: a copy loop calls it before
// taking a buffer, so that an idle session holds none. Control frames that
// arrive meanwhile (a keepalive's pong, a ping) are handled here, as Read
// would, so that they do not wake the caller. It honours the read and
// dead-peer deadlines as Read does; an error is kept for Read to return.
//
// Only a Conn directly over TCP waits here (it peeks at the socket); over
// TLS, whose conn keeps record buffers of its own, WaitRead returns at
// once and Read does the waiting.
func (c *Conn) WaitRead() error {
	if c.rc == nil {
		return nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil || c.rend > c.roff || c.dec.npend > 0 || len(c.prefix) > 0 || c.dec.remaining > 0 {
		return nil
	}
	c.heard()
	// After a read that emptied the socket's queue (TCP's recv returns
	// less than asked only then), new data must raise the poller, so the
	// first peek, which would find nothing, is skipped: a wake-up costs one
	// peek, as a netFD's costs one read that fails with EAGAIN.
	c.waited = !c.drained
	for {
		if err := c.rc.Read(c.peekFn); err != nil {
			c.rerr = c.readError(err)
			return nil
		}
		h := c.dec.pend[:max(c.peeked, 0)]
		if len(h) < 2 || !opcode(h[0]&opMask).control() {
			return nil // data, the end, an error, or too little to tell: Read's
		}
		need := 2 + int(h[1]&^maskBit)
		if h[1]&maskBit != 0 {
			need += 4
		}
		if h[1]&^maskBit > maxControlPayload || len(h) < need {
			return nil // a violation, or not whole yet: Read's
		}
		// The whole control frame is in the socket: take it and no more.
		n, err := c.nc.Read(c.dec.pend[:need])
		c.drained, c.waited = false, true
		if err != nil || n != need {
			c.dec.npend = n // Read goes on from there
			return nil
		}
		if _, stop, perr := c.dec.decode(c.dec.pend[:need], c.control); perr != nil {
			c.failProtocol(perr)
			return nil
		} else if stop {
			return nil
		}
	}
}

// waitReader sets c up for WaitRead when nc is a TCP conn: the peek
// function is made once, so that waiting allocates nothing.
func (c *Conn) waitReader(nc net.Conn) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	c.rc = rc
	c.peekFn = func(fd uintptr) bool {
		if !c.waited {
			c.waited = true
			return false
		}
		// recv(MSG_PEEK|MSG_DONTWAIT) into the pending-input buffer, which
		// is empty while WaitRead runs: EAGAIN makes the runtime's poller
		// wait for the socket (edge-triggered, so checking first is what
		// keeps data that is already there from being waited for).
		n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.dec.pend[0])), uintptr(len(c.dec.pend)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			c.peeked = int(n)
		case syscall.EAGAIN, syscall.EINTR:
			return false
		default:
			c.peeked = -1 // Read gets the error
		}
		return true
	}
}
