package tunnel

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

// testTimeout bounds every wait in these tests; reaching it is a failure.
const testTimeout = 10 * time.Second

// joined is a running Join between two TCP pairs: the test drives the
// outer ends, A and B; Join owns the inner ends.
type joined struct {
	A, B *net.TCPConn
	done chan joinResult
}

type joinResult struct {
	stats Stats
	err   error
}

func startJoin(t *testing.T, ctx context.Context, opts ...JoinOption) *joined {
	t.Helper()
	a, ja := nettest.TCPPair(t)
	jb, b := nettest.TCPPair(t)
	j := &joined{A: a, B: b, done: make(chan joinResult, 1)}
	go func() {
		s, err := Join(ctx, ja, jb, opts...)
		j.done <- joinResult{s, err}
	}()
	return j
}

func (j *joined) wait(t *testing.T) joinResult {
	t.Helper()
	select {
	case r := <-j.done:
		return r
	case <-time.After(testTimeout):
		t.Fatal("Join did not return")
		panic("unreachable")
	}
}

// readAllChan reads c to EOF on a new goroutine.
func readAllChan(c net.Conn) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(c)
		ch <- b
	}()
	return ch
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func TestJoinCopiesBothWays(t *testing.T) {
	var aToB, bToA atomic.Int64
	j := startJoin(t, context.Background(), WithCounters(&aToB, &bToA))
	toB := make([]byte, 5<<20+123)
	toA := make([]byte, 3<<20+7)
	rand.Read(toB)
	rand.Read(toA)
	atB := readAllChan(j.B)
	atA := readAllChan(j.A)
	// Both directions at once, in uneven writes.
	go writeChunks(j.A, toB, 1000, 70000)
	go writeChunks(j.B, toA, 1, 5000)
	if got := recv(t, atB, "a→b"); !bytes.Equal(got, toB) {
		t.Errorf("a→b: got %d bytes, want %d, or they differ", len(got), len(toB))
	}
	if got := recv(t, atA, "b→a"); !bytes.Equal(got, toA) {
		t.Errorf("b→a: got %d bytes, want %d, or they differ", len(got), len(toA))
	}
	r := j.wait(t)
	if r.err != nil {
		t.Errorf("Join: %v", r.err)
	}
	if r.stats.AToB != int64(len(toB)) || r.stats.BToA != int64(len(toA)) {
		t.Errorf("stats %+v, want AToB %d BToA %d", r.stats, len(toB), len(toA))
	}
	if aToB.Load() != r.stats.AToB || bToA.Load() != r.stats.BToA {
		t.Errorf("WithCounters counted %d/%d, Stats %+v", aToB.Load(), bToA.Load(), r.stats)
	}
}

// writeChunks writes data to c in chunks of cycling sizes, then
// half-closes c.
func writeChunks(c *net.TCPConn, data []byte, minChunk, maxChunk int) {
	n := minChunk
	for len(data) > 0 {
		k := min(n, len(data))
		if _, err := c.Write(data[:k]); err != nil {
			return
		}
		data = data[k:]
		n = n*3 + 1
		if n > maxChunk {
			n = minChunk
		}
	}
	c.CloseWrite()
}

func TestJoinHalfClose(t *testing.T) {
	j := startJoin(t, context.Background())
	j.A.Write([]byte("request"))
	j.A.CloseWrite()
	// B sees the request, then EOF, and can still answer.
	if got := recv(t, readAllChan(j.B), "the request and EOF at B"); string(got) != "request" {
		t.Fatalf("B read %q", got)
	}
	atA := readAllChan(j.A)
	j.B.Write([]byte("response"))
	j.B.CloseWrite()
	if got := recv(t, atA, "the response at A"); string(got) != "response" {
		t.Fatalf("A read %q", got)
	}
	r := j.wait(t)
	if r.err != nil || r.stats != (Stats{AToB: 7, BToA: 8}) {
		t.Fatalf("Join: %+v, %v", r.stats, r.err)
	}
}

func TestJoinLinger(t *testing.T) {
	const linger = 100 * time.Millisecond
	j := startJoin(t, context.Background(), WithLinger(linger))
	j.A.CloseWrite()
	start := time.Now()
	// B never closes: Join gives up after the linger time, and that is
	// not an error. Both outer ends see their peer go.
	r := j.wait(t)
	if d := time.Since(start); d < linger {
		t.Errorf("Join returned after %v, before the linger time %v", d, linger)
	}
	if r.err != nil {
		t.Errorf("Join: %v", r.err)
	}
	recv(t, readAllChan(j.A), "EOF at A")
	recv(t, readAllChan(j.B), "EOF at B")
}

func TestJoinNoLinger(t *testing.T) {
	j := startJoin(t, context.Background(), WithLinger(0))
	j.A.Write([]byte("x"))
	j.A.CloseWrite()
	r := j.wait(t)
	if r.err != nil || r.stats.AToB != 1 {
		t.Fatalf("Join: %+v, %v", r.stats, r.err)
	}
}

func TestJoinCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	j := startJoin(t, ctx)
	j.A.Write([]byte("hello"))
	if got := recv(t, readN(j.B, 5), "data at B"); string(got) != "hello" {
		t.Fatalf("B read %q", got)
	}
	cancel()
	r := j.wait(t)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Join: %v, want context.Canceled", r.err)
	}
	recv(t, readAllChan(j.A), "EOF at A")
	recv(t, readAllChan(j.B), "EOF at B")
}

func TestJoinCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j := startJoin(t, ctx)
	if r := j.wait(t); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Join: %v, want context.Canceled", r.err)
	}
}

func readN(c net.Conn, n int) <-chan []byte {
	ch := make(chan []byte, 1)
	go func() {
		b := make([]byte, n)
		n, _ := io.ReadFull(c, b)
		ch <- b[:n]
	}()
	return ch
}

func TestJoinPeerVanishes(t *testing.T) {
	j := startJoin(t, context.Background())
	j.B.Write([]byte("hi"))
	recv(t, readN(j.A, 2), "data at A")
	// A's peer disappears with a reset: a real error, and B is closed.
	j.A.SetLinger(0)
	j.A.Close()
	r := j.wait(t)
	if !errors.Is(r.err, syscall.ECONNRESET) {
		t.Fatalf("Join: %v, want a connection reset", r.err)
	}
	recv(t, readAllChan(j.B), "EOF at B")
}

// noHalfClose hides CloseWrite.
type noHalfClose struct{ net.Conn }

func TestJoinWithoutCloseWrite(t *testing.T) {
	a, ja := nettest.TCPPair(t)
	jb, b := nettest.TCPPair(t)
	done := make(chan joinResult, 1)
	go func() {
		s, err := Join(context.Background(), noHalfClose{ja}, noHalfClose{jb})
		done <- joinResult{s, err}
	}()
	a.Write([]byte("last words"))
	a.CloseWrite()
	// Without half-close, EOF ends the session: B gets the data and EOF,
	// and A is closed too.
	if got := recv(t, readAllChan(b), "EOF at B"); string(got) != "last words" {
		t.Fatalf("B read %q", got)
	}
	recv(t, readAllChan(a), "EOF at A")
	if r := recv(t, done, "Join"); r.err != nil {
		t.Fatalf("Join: %v", r.err)
	}
}

func TestJoinWriteError(t *testing.T) {
	j := startJoin(t, context.Background())
	// B's side is gone with a reset; data from A cannot be delivered.
	j.B.SetLinger(0)
	j.B.Close()
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := j.A.Write(buf); err != nil {
				return
			}
		}
	}()
	r := j.wait(t)
	if r.err == nil {
		t.Fatal("Join returned no error")
	}
}

func TestCopyBufPolicy(t *testing.T) {
	var c copyBuf
	steps := []struct {
		n       int
		wantBig bool
	}{
		{10, false},                        // interactive
		{smallBufSize - fullSlack, false},  // not full
		{smallBufSize - 8, true},           // full but for a websocket frame header
		{bigBufSize - bigSlack - 1, false}, // drained: back to small
		{smallBufSize, true},               // small buffer filled: bulk is coming
		{bigBufSize, true},                 // bulk
		{bigBufSize - 8, true},             // full but for a frame header
		{bigBufSize, true},
		{bigBufSize - bigSlack - 1, false}, // drained: back to small
		{smallBufSize, true},               // bulk again
		{0, false},
	}
	for i, s := range steps {
		if got := len(c.buf()); (got == bigBufSize) != (c.big != nil) {
			t.Fatalf("step %d: buf len %d", i, got)
		}
		c.update(s.n)
		if (c.big != nil) != s.wantBig {
			t.Fatalf("step %d: after a %d-byte read, big buffer held = %v", i, s.n, c.big != nil)
		}
	}
	c.update(smallBufSize)
	c.release()
	if c.big != nil {
		t.Fatal("release kept the big buffer")
	}
}

// readLog reports the buffer size of every Read call as it starts, and
// the byte count when it returns.
type readLog struct {
	net.Conn
	events chan readEvent
}

type readEvent struct {
	start bool
	n     int // buffer size at start, bytes read at return
}

func (r *readLog) Read(p []byte) (int, error) {
	r.events <- readEvent{start: true, n: len(p)}
	n, err := r.Conn.Read(p)
	r.events <- readEvent{n: n}
	return n, err
}

// TestJoinIdleHoldsNoBigBuffer checks that bulk traffic runs on big
// buffers and that the session goes back to its small buffer when the
// traffic turns interactive.
func TestJoinIdleHoldsNoBigBuffer(t *testing.T) {
	a, ja := nettest.TCPPair(t)
	jb, b := nettest.TCPPair(t)
	src := &readLog{Conn: ja, events: make(chan readEvent, 100000)}
	done := make(chan joinResult, 1)
	go func() {
		s, err := Join(context.Background(), src, jb)
		done <- joinResult{s, err}
	}()
	bulk := make([]byte, 4<<20)
	go a.Write(bulk)
	recv(t, readN(b, len(bulk)), "the bulk data")
	a.Write([]byte("k")) // then a keystroke
	recv(t, readN(b, 1), "the keystroke")

	// Find the Read that returned the keystroke; the Read after it, which
	// waits for more, must use the small buffer. Big reads carried the bulk.
	bigReads, total := 0, 0
	for {
		e := recv(t, src.events, "read events")
		if e.start {
			if e.n == bigBufSize {
				bigReads++
			}
			continue
		}
		total += e.n
		if total == len(bulk)+1 {
			break
		}
	}
	if next := recv(t, src.events, "the next Read"); !next.start || next.n != smallBufSize {
		t.Fatalf("after the keystroke, Read with a %d-byte buffer, want %d", next.n, smallBufSize)
	}
	if bigReads == 0 {
		t.Fatal("4 MiB copied without a big buffer")
	}
	a.Close()
	b.Close()
	recv(t, done, "Join")
}

func TestDialTLS(t *testing.T) {
	srv, pool := tlsServer(t)
	t.Run("ok", func(t *testing.T) {
		c, err := DialTLS(context.Background(), nil, srv.Addr().String(), clientConfig(pool))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("ping"))
		if got := recv(t, readN(c, 4), "the echo"); string(got) != "ping" {
			t.Fatalf("echo %q", got)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		d := &recordingDialer{}
		_, err := DialTLS(context.Background(), d, srv.Addr().String(), clientConfig(nil))
		if err == nil {
			t.Fatal("handshake with an untrusted certificate succeeded")
		}
		if d.conn == nil || !d.conn.closed {
			t.Fatal("the TCP conn was not closed")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		// A server that accepts and never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.Read(make([]byte, 1)) // the ClientHello arrived
			cancel()
			io.Copy(io.Discard, c)
		}()
		d := &recordingDialer{}
		errc := make(chan error, 1)
		go func() {
			_, err := DialTLS(ctx, d, l.Addr().String(), clientConfig(pool))
			errc <- err
		}()
		if err := recv(t, errc, "DialTLS"); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if !d.conn.closed {
			t.Fatal("the TCP conn was not closed")
		}
	})
}

type recordingDialer struct{ conn *closeRecorder }

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := new(net.Dialer).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	d.conn = &closeRecorder{Conn: c}
	return d.conn, nil
}

type closeRecorder struct {
	net.Conn
	closed bool
}

func (c *closeRecorder) Close() error {
	c.closed = true
	return c.Conn.Close()
}

// TestJoinTap: WithTap sees every byte of each direction, in order, and
// a tap's error ends the session with that error.
func TestJoinTap(t *testing.T) {
	var seen [2]bytes.Buffer // each written by its direction's loop only
	j := startJoin(t, context.Background(), WithTap(
		func(p []byte) error { seen[0].Write(p); return nil },
		func(p []byte) error { seen[1].Write(p); return nil }))
	toB, toA := make([]byte, 1<<20+3), make([]byte, 70000)
	rand.Read(toB)
	rand.Read(toA)
	atB, atA := readAllChan(j.B), readAllChan(j.A)
	go writeChunks(j.A, toB, 1000, 70000)
	go writeChunks(j.B, toA, 1, 5000)
	recv(t, atB, "a→b")
	recv(t, atA, "b→a")
	if r := j.wait(t); r.err != nil {
		t.Fatalf("Join: %v", r.err)
	}
	if !bytes.Equal(seen[0].Bytes(), toB) || !bytes.Equal(seen[1].Bytes(), toA) {
		t.Fatalf("taps saw %d and %d bytes, want %d and %d, or they differ", seen[0].Len(), seen[1].Len(), len(toB), len(toA))
	}

	errFull := errors.New("disk full")
	j = startJoin(t, context.Background(), WithTap(nil, func([]byte) error { return errFull }))
	go j.B.Write([]byte("x"))
	if r := j.wait(t); !errors.Is(r.err, errFull) {
		t.Fatalf("Join with a failing tap returned %v, want %v", r.err, errFull)
	}
}
