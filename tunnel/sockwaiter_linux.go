package tunnel

import (
	"syscall"
	"unsafe"
)

// sockWaiter waits for a socket to be readable through its RawConn: the
// runtime's poller waits (honouring the read deadline, and woken by
// Close), and peekReadable tells it whether to. It is for conns that wrap
// a socket (see ReadWaiterFor); Join reads a bare socket through a
// sockReader, which costs no syscall more than Read.
type sockWaiter struct {
	rc syscall.RawConn
}

func newSockWaiter(c syscall.Conn) readWaiter {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	return &sockWaiter{rc: rc}
}

// WaitRead implements readWaiter. The error, if any, is the RawConn's
// ("raw-read"); Read reports the conn's own.
func (w *sockWaiter) WaitRead() error {
	return w.rc.Read(peekReadable)
}

// peekReadable reports whether a read from the socket fd would not block:
// ppoll(2) with a zero timeout looks without consuming anything, neither
// data nor a pending error (a recv(2) with MSG_PEEK would consume a
// pending ECONNRESET, and the Read after it would see EOF). Data, an EOF
// or an error: the following Read returns it at once.
//
// It looks first, before any wait: the runtime's poller is
// edge-triggered, so waiting for data that has already arrived (and whose
// edge has passed) could wait forever. A raw syscall: with a zero timeout
// it never blocks, so there is no need to tell the scheduler.
func peekReadable(fd uintptr) bool {
	p := pollFd{fd: int32(fd), events: pollIn}
	var zero syscall.Timespec
	n, _, errno := syscall.RawSyscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1,
		uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
	return errno != 0 || n != 0
}

// pollFd is struct pollfd (poll(2), <poll.h>).
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// pollIn is POLLIN (<poll.h>): there is data to read. poll(2) reports
// POLLERR and POLLHUP whether asked for or not.
const pollIn = 0x1
