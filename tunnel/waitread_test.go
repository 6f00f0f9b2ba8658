//go:build linux

package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/tunnel/sockread"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
	"net/http"
	"net/http/httptest"
	"strings"
)

// bulkThenKeystroke sends 4 MiB then one byte from a to b through a
// running Join and checks that they arrive intact.
func bulkThenKeystroke(t *testing.T, a, b *net.TCPConn) {
	t.Helper()
	bulk := make([]byte, 4<<20)
	for i := range bulk {
		bulk[i] = byte(i * 7)
	}
	go a.Write(bulk)
	if got := recv(t, readN(b, len(bulk)), "the bulk data"); string(got) != string(bulk) {
		t.Fatal("the bulk data arrived changed")
	}
	a.Write([]byte("k"))
	if got := recv(t, readN(b, 1), "the keystroke"); string(got) != "k" {
		t.Fatalf("keystroke %q", got)
	}
}

// countWaits receives what each wait reports (did the direction hold a
// buffer?) until none comes for a while, and fails on any held buffer or
// on fewer than min waits.
func countWaits(t *testing.T, waits <-chan bool, min int) {
	t.Helper()
	n := 0
	for {
		select {
		case held := <-waits:
			if held {
				t.Fatal("a direction waited holding a buffer")
			}
			n++
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if n < min {
		t.Fatalf("%d waits; want at least %d", n, min)
	}
}

func holds(b *copyBuf) bool { return b.small != nil || b.big != nil }

// TestJoinWaitsHoldingNoBuffer: both directions of a Join between TCP
// conns wait holding neither buffer: at the start, after bulk data and
// after a keystroke; the bytes arrive intact.
func TestJoinWaitsHoldingNoBuffer(t *testing.T) {
	waits := make(chan bool, 100000)
	testHookWaiting = func(b *copyBuf) { waits <- holds(b) }
	defer func() { testHookWaiting = nil }()
	j := startJoin(t, context.Background())
	bulkThenKeystroke(t, j.A, j.B)
	// Before the bulk data and after the keystroke in A's direction,
	// before anything in B's: 3 waits at least.
	countWaits(t, waits, 3)
	j.A.Close()
	j.B.Close()
	j.wait(t)
}

// lazyWrapper wraps a conn, hiding its type, and passes ReadLazy on as
// the proxy's console side does.
type lazyWrapper struct {
	net.Conn
	lazy LazyReader
}

func (w lazyWrapper) ReadLazy(take func() []byte, release func()) ([]byte, int, error) {
	return w.lazy.ReadLazy(take, release)
}

// TestJoinLazyWrapper: a direction whose source is a wrapper passing
// LazyReaderFor's reader on waits holding no buffer.
func TestJoinLazyWrapper(t *testing.T) {
	a, ja := nettest.TCPPair(t)
	jb, b := nettest.TCPPair(t)
	w := lazyWrapper{ja, LazyReaderFor(ja)}
	if j := newJoiner(w, jb, nil); j.lazies[0] != LazyReader(w) || j.lazies[1] == nil {
		t.Fatalf("readers %v: want the wrapper and jb's socket reader", j.lazies)
	}
	waits := make(chan bool, 100000)
	testHookWaiting = func(b *copyBuf) { waits <- holds(b) }
	defer func() { testHookWaiting = nil }()
	done := make(chan joinResult, 1)
	go func() {
		s, err := Join(context.Background(), w, jb)
		done <- joinResult{s, err}
	}()
	bulkThenKeystroke(t, a, b)
	countWaits(t, waits, 3)
	a.Close()
	b.Close()
	recv(t, done, "Join")
}

// TestSockReader: a sockread.Reader returns what the conn's Read would: data
// already there (whose poller edge has passed), data that comes later,
// EOF, a reset, the error of a closed conn, a deadline's timeout.
func TestSockReader(t *testing.T) {
	read := func(t *testing.T, c net.Conn) (int, error) {
		t.Helper()
		var bufs copyBuf
		s := sockread.New(c)
		if s == nil {
			t.Fatalf("no sockread.Reader for a %T", c)
		}
		type result struct {
			buf []byte
			n   int
			err error
		}
		ch := make(chan result, 1)
		go func() {
			buf, n, err := s.ReadLazy(bufs.buf, bufs.releaseAll)
			ch <- result{buf, n, err}
		}()
		r := recv(t, ch, "read")
		if &r.buf[0] != &bufs.buf()[0] {
			t.Fatal("read into a buffer the direction does not hold")
		}
		if r.n > 0 && string(r.buf[:r.n]) != "xy"[:r.n] {
			t.Fatalf("read %q", r.buf[:r.n])
		}
		return r.n, r.err
	}
	t.Run("data already there", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		a.Write([]byte("xy"))
		time.Sleep(50 * time.Millisecond) // the poller's edge passes unseen
		if n, err := read(t, b); n != 2 || err != nil {
			t.Fatalf("read: %d, %v", n, err)
		}
	})
	t.Run("data later", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		time.AfterFunc(50*time.Millisecond, func() { a.Write([]byte("xy")) })
		if n, err := read(t, b); n != 2 || err != nil {
			t.Fatalf("read: %d, %v", n, err)
		}
	})
	t.Run("EOF", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		time.AfterFunc(50*time.Millisecond, func() { a.CloseWrite() })
		if n, err := read(t, b); n != 0 || err != io.EOF {
			t.Fatalf("read: %d, %v; want EOF", n, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		a, b := nettest.TCPPair(t)
		a.SetLinger(0)
		time.AfterFunc(50*time.Millisecond, func() { a.Close() })
		_, err := read(t, b)
		var op *net.OpError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &op) || op.Op != "read" ||
			op.Addr.String() != a.LocalAddr().String() || op.Source.String() != b.LocalAddr().String() {
			t.Fatalf("read: %v; want Read's connection reset", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		_, b := nettest.TCPPair(t)
		time.AfterFunc(50*time.Millisecond, func() { b.Close() })
		if _, err := read(t, b); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read: %v; want Read's closed error", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		_, b := nettest.TCPPair(t)
		b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := read(t, b)
		var op *net.OpError
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &op) || op.Op != "read" {
			t.Fatalf("read: %v; want Read's timeout", err)
		}
	})
	t.Run("unix", func(t *testing.T) {
		a, b := unixPair(t)
		time.AfterFunc(50*time.Millisecond, func() { a.Write([]byte("xy")) })
		for _, c := range []net.Conn{a, b} {
			if sockread.New(c) == nil {
				t.Fatalf("no sockread.Reader for the %s %T", c.LocalAddr().Network(), c)
			}
		}
		if n, err := read(t, b); n != 2 || err != nil {
			t.Fatalf("read: %d, %v", n, err)
		}
	})
	t.Run("unixgram", func(t *testing.T) {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: t.TempDir() + "/g", Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if sockread.New(c) != nil {
			t.Fatal("a sockread.Reader for a datagram socket, whose empty datagram is no EOF")
		}
	})
}

// TestLazyReaderFor: sockets and LazyReaders are read lazily, a TLS conn
// not.
func TestLazyReaderFor(t *testing.T) {
	a, _ := nettest.TCPPair(t)
	if _, ok := LazyReaderFor(a).(*sockread.Reader); !ok {
		t.Fatal("no socket reader for a *net.TCPConn")
	}
	if l := LazyReaderFor(tls.Client(a, nil)); l != nil {
		t.Fatal("a lazy reader for a *tls.Conn, which buffers records")
	}
	w := lazyWrapper{a, LazyReaderFor(a)}
	if l := LazyReaderFor(w); l != LazyReader(w) {
		t.Fatal("a LazyReader's lazy reader is not itself")
	}
}

// unixPair returns the two ends of a Unix stream socket connection,
// closed when the test ends.
func unixPair(t *testing.T) (a, b net.Conn) {
	sock := t.TempDir() + "/s"
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, err = net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
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

// TestJoinWebsocketWaitsHoldingNoBuffer: a direction whose source is a
// server websocket over TCP (ReadLazy) waits holding no buffer too: at
// the start, after bulk data in messages and after a keystroke.
func TestJoinWebsocketWaitsHoldingNoBuffer(t *testing.T) {
	waits := make(chan bool, 100000)
	testHookWaiting = func(b *copyBuf) { waits <- holds(b) }
	defer func() { testHookWaiting = nil }()
	jb, b := nettest.TCPPair(t)
	done := make(chan joinResult, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := wsconn.Upgrade(w, r, &wsconn.Options{KeepAlive: -1})
		if err != nil {
			t.Error(err)
			return
		}
		if j := newJoiner(ws, jb, nil); j.lazies[0] == nil {
			t.Error("a server websocket over TCP is not read lazily")
		}
		s, err := Join(context.Background(), ws, jb)
		done <- joinResult{s, err}
	}))
	defer srv.Close()
	a, err := wsconn.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	bulk := make([]byte, 4<<20)
	for i := range bulk {
		bulk[i] = byte(i * 7)
	}
	go func() {
		for p := bulk; len(p) > 0; p = p[min(len(p), 32<<10):] {
			a.Write(p[:min(len(p), 32<<10)])
		}
	}()
	if got := recv(t, readN(b, len(bulk)), "the bulk data"); string(got) != string(bulk) {
		t.Fatal("the bulk data arrived changed")
	}
	a.Write([]byte("k"))
	if got := recv(t, readN(b, 1), "the keystroke"); string(got) != "k" {
		t.Fatalf("keystroke %q", got)
	}
	countWaits(t, waits, 3)
	a.Close()
	b.Close()
	recv(t, done, "Join")
}
