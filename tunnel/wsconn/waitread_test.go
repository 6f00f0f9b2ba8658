package wsconn

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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

// TestWaitRead: WaitRead returns when data is there, not for control
// frames, which it handles (a ping is answered while it waits), and
// leaves the data to Read.
func TestWaitRead(t *testing.T) {
	c, peer := gorillaPeer(t, &Options{KeepAlive: -1})
	if c.rc == nil {
		t.Fatal("a Conn over TCP cannot wait without a buffer")
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
	waited := goErr(c.WaitRead)
	dl := time.Now().Add(time.Second)
	peer.WriteControl(websocket.PingMessage, []byte("are you there"), dl)
	peer.WriteControl(websocket.PongMessage, []byte("unsolicited"), dl)
	if got := wait(t, pongs, "the pong"); got != "are you there" {
		t.Fatalf("pong %q", got)
	}
	select {
	case err := <-waited:
		t.Fatalf("WaitRead returned (%v) for control frames only", err)
	case <-time.After(100 * time.Millisecond):
	}
	peer.WriteMessage(websocket.BinaryMessage, []byte("data"))
	if err := wait(t, waited, "WaitRead"); err != nil {
		t.Fatal(err)
	}
	if c.rbuf != nil || c.dec.npend != 0 {
		t.Fatal("WaitRead holds input")
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "data" {
		t.Fatalf("Read after WaitRead: %q, %v", buf[:n], err)
	}

	// A close frame ends the wait; Read reports it.
	waited = goErr(c.WaitRead)
	peer.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), dl)
	wait(t, waited, "WaitRead after the close frame")
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("Read after the close frame: %v, want io.EOF", err)
	}
}

// TestWaitReadDeadlines: the read deadline and the dead-peer timeout end
// WaitRead, and Read then reports them as it would have itself.
func TestWaitReadDeadlines(t *testing.T) {
	c, _ := gorillaPeer(t, &Options{KeepAlive: -1})
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	wait(t, goErr(c.WaitRead), "WaitRead with a deadline")
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("WaitRead returned after %v, before the deadline", d)
	}
	if _, err := c.Read(make([]byte, 512)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after WaitRead's deadline: %v", err)
	}

	c, _ = gorillaPeer(t, &Options{KeepAlive: -1, DeadPeerTimeout: 150 * time.Millisecond})
	wait(t, goErr(c.WaitRead), "WaitRead with a dead peer")
	if _, err := c.Read(make([]byte, 512)); !errors.Is(err, ErrPeerTimeout) {
		t.Fatalf("Read after a dead peer: %v, want ErrPeerTimeout", err)
	}
}

// TestWaitReadAllocs: waiting allocates nothing. The peer writes raw
// frames from a fixed buffer, so that every allocation counted (the count
// is process-wide) is the Conn's.
func TestWaitReadAllocs(t *testing.T) {
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := Upgrade(w, r, &Options{KeepAlive: -1})
		conns <- c
	}))
	defer srv.Close()
	peer, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	rawHandshake(t, peer, "/")
	c := wait(t, conns, "the upgrade").(*Conn)
	defer c.Close()
	frame := []byte{0x82, 0x81, 1, 2, 3, 4, 'x' ^ 1} // FIN+binary, masked, 1 byte
	buf := make([]byte, 512)
	n := testing.AllocsPerRun(200, func() {
		peer.Write(frame)
		c.WaitRead()
		if n, err := c.Read(buf); n != 1 || buf[0] != 'x' || err != nil {
			t.Fatalf("Read: %q, %v", buf[:n], err)
		}
	})
	if n != 0 {
		t.Fatalf("WaitRead and Read allocate %v times per message", n)
	}
}
