package wsconn

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/virtconsole/virtconsole/tunnel/connlimit"
)

// gorillaPeer upgrades one request with opts and dials it with gorilla,
// which can send any control frame; it returns the server's Conn.
func gorillaPeer(t *testing.T, opts *Options) (*Conn, *websocket.Conn) {
	t.Helper()
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, opts)
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			close(conns)
			return
		}
		conns <- c
	}))
	t.Cleanup(srv.Close)
	peer, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, ok := <-conns
	if !ok {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close() })
	return c.(*Conn), peer
}

// lazyBuf is the buffer ReadLazy takes and releases.
type lazyBuf struct {
	buf     []byte
	held    atomic.Bool // taken and not released (take is idempotent, as Join's)
	waiting chan struct{}
}

func newLazyBuf() *lazyBuf {
	return &lazyBuf{buf: make([]byte, 2048), waiting: make(chan struct{}, 100)}
}

func (l *lazyBuf) take() []byte { l.held.Store(true); return l.buf }
func (l *lazyBuf) release() {
	l.held.Store(false)
	select {
	case l.waiting <- struct{}{}:
	default:
	}
}

// readLazy calls c.ReadLazy with l's functions on another goroutine.
func readLazy(c *Conn, l *lazyBuf) <-chan lazyResult {
	ch := make(chan lazyResult, 1)
	go func() {
		buf, n, err := c.ReadLazy(l.take, l.release)
		ch <- lazyResult{string(buf[:n]), err}
	}()
	return ch
}

type lazyResult struct {
	data string
	err  error
}

// TestReadLazy: ReadLazy holds no buffer while it waits, handles control
// frames without returning (a ping is answered while it waits), and
// returns data in the buffer it took.
func TestReadLazy(t *testing.T) {
	c, peer := gorillaPeer(t, &Options{KeepAlive: -1})
	if c.lazy.sr == nil {
		t.Fatal("a Conn over TCP reads eagerly")
	}
	pongs := make(chan string, 4)
	peer.SetPongHandler(func(s string) error { pongs <- s; return nil })
	go func() {
		for {
			if _, _, err := peer.NextReader(); err != nil {
				return
			}
		}
	}()
	l := newLazyBuf()
	got := readLazy(c, l)
	wait(t, l.waiting, "the first wait")
	dl := time.Now().Add(time.Second)
	peer.WriteControl(websocket.PingMessage, []byte("are you there"), dl)
	peer.WriteControl(websocket.PongMessage, []byte("unsolicited"), dl)
	if got := wait(t, pongs, "the pong"); got != "are you there" {
		t.Fatalf("pong %q", got)
	}
	select {
	case r := <-got:
		t.Fatalf("ReadLazy returned (%q, %v) for control frames only", r.data, r.err)
	case <-time.After(100 * time.Millisecond):
	}
	if l.held.Load() {
		t.Fatal("ReadLazy holds its buffer while it waits")
	}
	peer.WriteMessage(websocket.BinaryMessage, []byte("data"))
	if r := wait(t, got, "ReadLazy"); r.data != "data" || r.err != nil {
		t.Fatalf("ReadLazy: %q, %v", r.data, r.err)
	}

	// A close frame ends it with io.EOF.
	got = readLazy(c, l)
	peer.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), dl)
	if r := wait(t, got, "ReadLazy after the close frame"); r.err != io.EOF {
		t.Fatalf("ReadLazy after the close frame: %q, %v, want io.EOF", r.data, r.err)
	}
}

// TestReadLazyDeadlines: the read deadline and the dead-peer timeout end
// ReadLazy as they end Read.
func TestReadLazyDeadlines(t *testing.T) {
	c, _ := gorillaPeer(t, &Options{KeepAlive: -1})
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	r := wait(t, readLazy(c, newLazyBuf()), "ReadLazy with a deadline")
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("ReadLazy returned after %v, before the deadline", d)
	}
	if !errors.Is(r.err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadLazy past its deadline: %v", r.err)
	}

	c, _ = gorillaPeer(t, &Options{KeepAlive: -1, DeadPeerTimeout: 150 * time.Millisecond})
	if r := wait(t, readLazy(c, newLazyBuf()), "ReadLazy with a dead peer"); !errors.Is(r.err, ErrPeerTimeout) {
		t.Fatalf("ReadLazy with a dead peer: %v, want ErrPeerTimeout", r.err)
	}
}

// rawPeer upgrades one request and returns the server's Conn and the raw
// TCP conn of the client, which writes frames of its own.
func rawPeer(t *testing.T) (*Conn, net.Conn) {
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := Upgrade(w, r, &Options{KeepAlive: -1})
		conns <- c
	}))
	t.Cleanup(srv.Close)
	peer, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	rawHandshake(t, peer, "/")
	c := wait(t, conns, "the upgrade").(*Conn)
	t.Cleanup(func() { c.Close() })
	return c, peer
}

// TestReadLazyAllocs: reading lazily allocates nothing. The peer writes
// raw frames from a fixed buffer, so that every allocation counted (the
// count is process-wide) is the Conn's.
func TestReadLazyAllocs(t *testing.T) {
	c, peer := rawPeer(t)
	frame := []byte{0x82, 0x81, 1, 2, 3, 4, 'x' ^ 1} // FIN+binary, masked, 1 byte
	l := newLazyBuf()
	take, release := l.take, l.release
	n := testing.AllocsPerRun(200, func() {
		peer.Write(frame)
		if buf, n, err := c.ReadLazy(take, release); n != 1 || buf[0] != 'x' || err != nil {
			t.Fatalf("ReadLazy: %q, %v", buf[:n], err)
		}
	})
	if n != 0 {
		t.Fatalf("ReadLazy allocates %v times per message", n)
	}
}

// TestReadLazyReset: a reset is ReadLazy's error, as it is Read's.
func TestReadLazyReset(t *testing.T) {
	c, peer := rawPeer(t)
	l := newLazyBuf()
	got := readLazy(c, l)
	wait(t, l.waiting, "the wait")
	peer.(*net.TCPConn).SetLinger(0) // close sends a reset
	peer.Close()
	if r := wait(t, got, "ReadLazy"); !errors.Is(r.err, syscall.ECONNRESET) {
		t.Fatalf("ReadLazy after a reset: %v, want ECONNRESET", r.err)
	}
}

// TestWrappedSocket: under a wrapper with an Unwrap method (the
// connection limiter's, which the daemon puts under every plain
// listener), a Conn still writes with writev and reads lazily from the
// socket, and closing it still closes the wrapper (the limiter's slot is
// given back).
func TestWrappedSocket(t *testing.T) {
	conns := make(chan net.Conn, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := Upgrade(w, r, &Options{KeepAlive: -1})
		conns <- c
	}))
	limit := connlimit.New(srv.Listener, 10)
	srv.Listener = limit
	srv.Start()
	defer srv.Close()
	peer, err := Dial(context.Background(), wsURL(srv), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c := wait(t, conns, "the upgrade").(*Conn)
	if _, ok := c.sock.(*net.TCPConn); !ok || !c.writev || c.lazy.sr == nil {
		t.Fatalf("under the limiter's wrapper: socket %T, writev %v, lazy %v", c.sock, c.writev, c.lazy.sr != nil)
	}
	l := newLazyBuf()
	got := readLazy(c, l)
	wait(t, l.waiting, "the wait")
	peer.Write([]byte("through"))
	if r := wait(t, got, "ReadLazy"); r.data != "through" || r.err != nil {
		t.Fatalf("ReadLazy: %q, %v", r.data, r.err)
	}
	c.Write([]byte("back"))
	buf := make([]byte, 512)
	if n, err := peer.Read(buf); string(buf[:n]) != "back" || err != nil {
		t.Fatalf("peer read %q, %v", buf[:n], err)
	}
	if n := limit.Open("127.0.0.1"); n != 1 {
		t.Fatalf("%d connections counted; want 1", n)
	}
	c.Close()
	if n := limit.Open("127.0.0.1"); n != 0 {
		t.Fatalf("%d connections counted after Close; want 0", n)
	}
}
