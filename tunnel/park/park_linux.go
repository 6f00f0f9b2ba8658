// Package park waits for many quiet sockets at once on one goroutine, so
// that a copy loop whose source has gone idle can let its own goroutine
// end: it hands the socket to a Poller, and the Poller calls it back
// (the loop starts a goroutine again) when input, an end or an error
// comes. An idle proxy session then holds one goroutine instead of two:
// 4 KiB of stack and a g less each (see tunnel.WithParking).
//
// The Poller is an epoll instance of its own (epoll(7)), beside the Go
// runtime's: a socket registered in both is reported by both, and a read
// through the conn's RawConn after the wake-up behaves as any other.
// Registrations are one-shot and level-triggered, so input that arrived
// between the read that found nothing and Wait is reported at once.
// Elsewhere than on Linux, New returns an error and callers keep their
// goroutines.
package park

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ErrClosed is Wait's error once the Poller is closed.
var ErrClosed = errors.New("park: poller closed")

// A Token names one Wait, for Cancel. Tokens are never reused, so a
// report about a socket that was closed and whose descriptor now
// belongs to another conn cannot wake the wrong waiter.
type Token uint64

// stopToken is the epoll data of the eventfd that Close writes to.
const stopToken Token = 0

// Poller waits for sockets to become readable on one goroutine of its
// own, which Close stops and waits for.
type Poller struct {
	epfd, evfd int
	done       chan struct{} // closed when loop returns

	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex
	waits  map[Token]func() // pending Waits' wake functions
	next   Token
	closed bool
}

// New starts a Poller.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("park: epoll_create1: %w", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("park: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(evfd)
		unix.Close(epfd)
		return nil, fmt.Errorf("park: epoll_ctl: %w", err)
	}
	p := &Poller{epfd: epfd, evfd: evfd, done: make(chan struct{}), waits: map[Token]func(){}, next: stopToken + 1}
	go p.loop() // stopped and awaited by Close
	return p, nil
}

// Wait arranges for wake to be called once, on the Poller's goroutine,
// when the socket behind rc is readable, has ended or has failed; wake
// must not block (it starts a goroutine). Cancel(token) withdraws it.
// Closing the socket does not call wake: its owner cancels. An error
// means nothing was arranged (ErrClosed, or rc's socket is closed).
func (p *Poller) Wait(rc syscall.RawConn, wake func()) (Token, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	t := p.next
	p.next++
	p.waits[t] = wake
	p.mu.Unlock()

	// EPOLLRDHUP: the peer's half-close; EPOLLERR and EPOLLHUP are
	// always reported.
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(uint32(t)), Pad: int32(uint32(t >> 32))}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		// MOD first: a socket that waited before is still registered,
		// disarmed by EPOLLONESHOT (one system call per Wait); closing
		// the socket removes it.
		if cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, int(fd), &ev); cerr == unix.ENOENT {
			cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil && cerr != nil {
		err = fmt.Errorf("park: epoll_ctl: %w", cerr)
	}
	if err != nil {
		p.Cancel(t)
		return 0, err
	}
	return t, nil
}

// Cancel withdraws the Wait of t. It reports whether it did so before
// wake was called: if not, wake has been or is being called.
func (p *Poller) Cancel(t Token) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.waits[t]; !ok {
		return false
	}
	delete(p.waits, t)
	return true
}

// Close stops the Poller's goroutine and waits for it, which first calls
// the wake function of every Wait still pending, so that their owners go
// on reading as they did before they waited here; then it closes the
// epoll instance. Wait fails from then on. Later calls return the first
// one's error.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		one := [8]byte{1} // added to the eventfd's counter: any non-zero value wakes epoll
		if _, err := unix.Write(p.evfd, one[:]); err != nil {
			// The goroutine cannot be told to stop: leave it, and the
			// descriptors it uses.
			p.closeErr = fmt.Errorf("park: stopping the poller: %w", err)
			return
		}
		<-p.done // also when loop ended by itself
		unix.Close(p.evfd)
		unix.Close(p.epfd)
	})
	return p.closeErr
}

// loop reports readable sockets until Close writes to the eventfd (or
// epoll fails, which is not expected), then wakes every pending Wait.
func (p *Poller) loop() {
	defer close(p.done)
	defer p.wakeAll()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return // EBADF, EFAULT, EINVAL: ours to avoid
		}
		for _, ev := range events[:n] {
			t := Token(uint32(ev.Fd)) | Token(uint32(ev.Pad))<<32
			if t == stopToken {
				return
			}
			p.mu.Lock()
			wake := p.waits[t]
			delete(p.waits, t)
			p.mu.Unlock()
			if wake != nil {
				wake()
			}
		}
	}
}

// wakeAll ends the Poller: Wait fails from now on, and every pending
// Wait's wake is called.
func (p *Poller) wakeAll() {
	p.mu.Lock()
	p.closed = true
	pending := p.waits
	p.waits = nil
	p.mu.Unlock()
	for _, wake := range pending {
		wake()
	}
}
