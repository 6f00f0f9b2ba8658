//go:build linux

package park

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

// wakes returns a wake function and the channel it reports on.
func wakes() (func(), chan struct{}) {
	ch := make(chan struct{}, 4)
	return func() { ch <- struct{}{} }, ch
}

func rawConn(t *testing.T, c *net.TCPConn) syscall.RawConn {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func woken(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("not woken: %s", what)
	}
}

func notWoken(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Fatalf("woken: %s", what)
	case <-time.After(100 * time.Millisecond):
	}
}

func newPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// A Wait is woken once by input, by input that came before it, by the
// peer's end and by its reset; a socket waits again after a wake-up (the
// registration is re-armed, one-shot).
func TestWaitWakes(t *testing.T) {
	p := newPoller(t)
	a, b := nettest.TCPPair(t)
	wake, ch := wakes()

	if _, err := p.Wait(rawConn(t, b), wake); err != nil {
		t.Fatal(err)
	}
	notWoken(t, ch, "nothing was sent")
	a.Write([]byte("x"))
	woken(t, ch, "input")
	notWoken(t, ch, "one-shot: woken once")

	// Input not read yet: level-triggered, the next Wait wakes at once.
	if _, err := p.Wait(rawConn(t, b), wake); err != nil {
		t.Fatal(err)
	}
	woken(t, ch, "input pending before Wait")
	buf := make([]byte, 8)
	if n, err := b.Read(buf); n != 1 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}

	if _, err := p.Wait(rawConn(t, b), wake); err != nil {
		t.Fatal(err)
	}
	notWoken(t, ch, "input was read")
	a.CloseWrite()
	woken(t, ch, "the peer's half-close")

	c, d := nettest.TCPPair(t)
	if _, err := p.Wait(rawConn(t, d), wake); err != nil {
		t.Fatal(err)
	}
	c.SetLinger(0)
	c.Close()
	woken(t, ch, "the peer's reset")
}

// Cancel withdraws a Wait before its wake-up, and says so; after it, it
// reports that the wake-up came.
func TestCancel(t *testing.T) {
	p := newPoller(t)
	a, b := nettest.TCPPair(t)
	wake, ch := wakes()
	tok, err := p.Wait(rawConn(t, b), wake)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Cancel(tok) {
		t.Fatal("Cancel before any input: false")
	}
	a.Write([]byte("x"))
	notWoken(t, ch, "cancelled")
	if p.Cancel(tok) {
		t.Fatal("second Cancel: true")
	}

	tok, err = p.Wait(rawConn(t, b), wake) // input is pending
	if err != nil {
		t.Fatal(err)
	}
	woken(t, ch, "input pending")
	if p.Cancel(tok) {
		t.Fatal("Cancel after the wake-up: true")
	}
}

// Close wakes every pending Wait and stops the goroutine; Wait fails
// after it, and so does a Wait on a closed socket.
func TestClose(t *testing.T) {
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	_, b := nettest.TCPPair(t)
	_, d := nettest.TCPPair(t)
	wake, ch := wakes()
	for _, c := range []*net.TCPConn{b, d} {
		if _, err := p.Wait(rawConn(t, c), wake); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	woken(t, ch, "Close, first Wait")
	woken(t, ch, "Close, second Wait")
	select {
	case <-p.done:
	default:
		t.Fatal("Close returned before its goroutine ended")
	}
	if _, err := p.Wait(rawConn(t, b), wake); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	q := newPoller(t)
	rc := rawConn(t, d)
	d.Close()
	if _, err := q.Wait(rc, wake); err == nil {
		t.Fatal("Wait on a closed socket: no error")
	}
	q.mu.Lock()
	n := len(q.waits)
	q.mu.Unlock()
	if n != 0 {
		t.Fatalf("a failed Wait left %d waits", n)
	}
}

// A socket closed while it waits never wakes its Wait (its owner
// cancels), and a new socket that gets its descriptor number does not
// wake the old Wait: tokens are not reused.
func TestClosedSocketDoesNotWake(t *testing.T) {
	p := newPoller(t)
	a, b := nettest.TCPPair(t)
	wakeOld, old := wakes()
	tok, err := p.Wait(rawConn(t, b), wakeOld)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	a.Write([]byte("x"))
	notWoken(t, old, "closed socket")

	c, d := nettest.TCPPair(t) // likely b's descriptor number again
	wakeNew, ch := wakes()
	if _, err := p.Wait(rawConn(t, d), wakeNew); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("y"))
	woken(t, ch, "the new socket's input")
	notWoken(t, old, "the old Wait, by the new socket")
	if !p.Cancel(tok) {
		t.Fatal("the old Wait was not pending")
	}
}
