package tunnel

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

// waitSpy is a source that waits through a sockWaiter and checks, each
// time its direction waits, that the direction holds no buffer.
type waitSpy struct {
	*net.TCPConn
	w     readWaiter
	j     *joiner
	waits chan bool // per WaitRead: did the direction hold a buffer?
}

func (s *waitSpy) WaitRead() error {
	b := &s.j.bufs[0] // WaitRead runs on direction 0's goroutine, which owns it
	s.waits <- b.small != nil || b.big != nil
	return s.w.WaitRead()
}

// TestJoinWaitsHoldingNoBuffer: a direction whose source is a readWaiter
// waits holding neither buffer, at the start, after bulk data (which ran
// on big buffers) and after a keystroke; the bytes arrive intact.
func TestJoinWaitsHoldingNoBuffer(t *testing.T) {
	a, ja := nettest.TCPPair(t)
	jb, b := nettest.TCPPair(t)
	spy := &waitSpy{TCPConn: ja, w: waiterFor(ja), waits: make(chan bool, 100000)}
	if spy.w == nil {
		t.Fatal("no waiter for a *net.TCPConn")
	}
	j := newJoiner(spy, jb, nil)
	if j.waiters[0] != readWaiter(spy) || j.waiters[1] == nil {
		t.Fatalf("waiters %v: want the spy's and jb's", j.waiters)
	}
	spy.j = j
	done := make(chan joinResult, 1)
	go func() {
		s, err := j.run(context.Background())
		done <- joinResult{s, err}
	}()
	bulk := make([]byte, 4<<20)
	for i := range bulk {
		bulk[i] = byte(i * 7)
	}
	go a.Write(bulk)
	got := recv(t, readN(b, len(bulk)), "the bulk data")
	if string(got) != string(bulk) {
		t.Fatal("the bulk data arrived changed")
	}
	a.Write([]byte("k"))
	if got := recv(t, readN(b, 1), "the keystroke"); string(got) != "k" {
		t.Fatalf("keystroke %q", got)
	}
	// The wait before the bulk, and the one after the keystroke, at least.
	recv(t, spy.waits, "the first wait")
	waits := 1
	for {
		select {
		case held := <-spy.waits:
			if held {
				t.Fatal("the direction waited holding a buffer")
			}
			waits++
			continue
		case <-time.After(100 * time.Millisecond):
		}
		break
	}
	if waits < 2 {
		t.Fatalf("%d waits; want one before the bulk data and one after the keystroke", waits)
	}
	a.Close()
	b.Close()
	recv(t, done, "Join")
}

// TestSockWaiter: WaitRead returns at once for what is already there
// (data whose poller edge has passed, an EOF, a reset), wakes on data that
// comes later and on Close, and leaves the reporting to Read.
func TestSockWaiter(t *testing.T) {
	wait := func(t *testing.T, w readWaiter) error {
		t.Helper()
		ch := make(chan error, 1)
		go func() { ch <- w.WaitRead() }()
		return recv(t, ch, "WaitRead")
	}
	t.Run("data already there", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		w := waiterFor(b)
		a.Write([]byte("x"))
		// The data's edge passes while nobody waits; the poller's ready
		// state is reset when WaitRead starts: only the look finds it.
		time.Sleep(50 * time.Millisecond)
		if err := wait(t, w); err != nil {
			t.Fatal(err)
		}
		if err := wait(t, w); err != nil { // nothing consumed
			t.Fatal(err)
		}
		buf := make([]byte, 2)
		if n, err := b.Read(buf); n != 1 || err != nil {
			t.Fatalf("Read after WaitRead: %d, %v", n, err)
		}
	})
	t.Run("data later", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		time.AfterFunc(50*time.Millisecond, func() { a.Write([]byte("x")) })
		if err := wait(t, waiterFor(b)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("EOF", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		a.CloseWrite()
		if err := wait(t, waiterFor(b)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		w := waiterFor(b)
		a.SetLinger(0)
		a.Close()
		time.Sleep(50 * time.Millisecond)
		if err := wait(t, w); err != nil {
			t.Fatal(err)
		}
		// The look consumed nothing: Read reports the reset.
		if _, err := b.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read after WaitRead: %v; want a connection reset", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		_, b := nettest.TCPPair(t)
		time.AfterFunc(50*time.Millisecond, func() { b.Close() })
		if err := wait(t, waiterFor(b)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("WaitRead on a closed conn: %v", err)
		}
	})
	t.Run("unix", func(t *testing.T) {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		var conns [2]net.Conn
		for i, fd := range fds {
			f := os.NewFile(uintptr(fd), "socketpair")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns[i] = c
		}
		w := waiterFor(conns[1])
		if w == nil {
			t.Fatalf("no waiter for a %T", conns[1])
		}
		time.AfterFunc(50*time.Millisecond, func() { conns[0].Write([]byte("x")) })
		if err := wait(t, w); err != nil {
			t.Fatal(err)
		}
	})
}

// TestJoinWaitDeadline: a read deadline that expires while a direction
// waits ends Join with Read's own timeout error.
func TestJoinWaitDeadline(t *testing.T) {
	_, ja := nettest.TCPPair(t)
	jb, _ := nettest.TCPPair(t)
	ja.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan joinResult, 1)
	go func() {
		s, err := Join(context.Background(), ja, jb)
		done <- joinResult{s, err}
	}()
	r := recv(t, done, "Join")
	var op *net.OpError
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || !errors.As(r.err, &op) || op.Op != "read" {
		t.Fatalf("Join: %v; want Read's timeout error", r.err)
	}
}
