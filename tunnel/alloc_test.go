package tunnel_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// roundTrip writes msg to c and reads len(back) bytes back.
func roundTrip(t *testing.T, c net.Conn, msg, back []byte) {
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, back); err != nil {
		t.Fatal(err)
	}
}

// TestJoinAllocs: Join allocates nothing per message. A 1-byte round trip
// through client ⇄ Join ⇄ echo (loopback TCP, counted as the proxy runs
// it) allocates nothing in the whole process: the client and the echo
// use fixed buffers, net.TCPConn allocates nothing. Each way a direction
// reads: TCP sources, read through their RawConn holding no buffer while
// they wait (buffers to and from their pools); the same conns behind a
// wrapper that passes tunnel.LazyReaderFor's ReadLazy on, as the proxy's
// console side does; and behind a plain wrapper, read holding the small
// buffer.
func TestJoinAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"waiting holding nothing", func(c net.Conn) net.Conn { return c }},
		{"waiting in a wrapper's ReadLazy", func(c net.Conn) net.Conn { return lazyConn{c, tunnel.LazyReaderFor(c)} }},
		{"reading holding a buffer", func(c net.Conn) net.Conn { return struct{ net.Conn }{c} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, ja := nettest.TCPPair(t)
			jb, sink := nettest.TCPPair(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				tunnel.Join(context.Background(), tc.wrap(ja), tc.wrap(jb),
					tunnel.WithCounters(new(atomic.Int64), new(atomic.Int64)))
			}()
			echoed := make(chan struct{})
			go func() { defer close(echoed); nettest.Echo(sink) }()
			defer func() { client.Close(); sink.Close(); <-done; <-echoed }()

			msg, back := []byte{'x'}, make([]byte, 1)
			roundTrip(t, client, msg, back) // warm up: buffers, pollers
			if n := testing.AllocsPerRun(1000, func() { roundTrip(t, client, msg, back) }); n != 0 {
				t.Errorf("a round trip through Join allocates %v times; want 0", n)
			}
		})
	}
}

// lazyConn is a wrapper that passes LazyReaderFor's ReadLazy on.
type lazyConn struct {
	net.Conn
	l tunnel.LazyReader
}

func (c lazyConn) ReadLazy(take func() []byte, release func()) ([]byte, int, error) {
	return c.l.ReadLazy(take, release)
}

// TestWebsocketJoinAllocs: the proxy's side of a websocket session, a
// server wsconn joined to a TCP echo, allocates nothing per 1-byte round
// trip: nothing (gorilla/websocket v1.5.3, which wsconn used before its
// own codec, allocated 2: a *messageReader per message read and the
// boxed write buffer it gave back to its pool). The client speaks raw RFC 6455 frames
// over TCP from fixed buffers, so that every allocation counted (the
// count is process-wide) is the server's.
func TestWebsocketJoinAllocs(t *testing.T) {
	echoL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echoL.Close()
	sessions := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { sessions <- struct{}{} }()
		ws, err := wsconn.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		console, err := net.Dial("tcp", echoL.Addr().String())
		if err != nil {
			ws.Close()
			t.Error(err)
			return
		}
		tunnel.Join(context.Background(), ws, console)
	}))
	defer srv.Close()

	c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: HTTP %d", resp.StatusCode)
	}
	sink, err := echoL.Accept()
	if err != nil {
		t.Fatal(err)
	}
	echoed := make(chan struct{})
	go func() { defer close(echoed); nettest.Echo(sink) }()
	defer func() { c.Close(); <-sessions; sink.Close(); <-echoed }()

	// A masked binary frame (RFC 6455 5.2) with the mask 0: FIN+binary,
	// MASK+length 1, the mask key, 'x'. The answer is unmasked: 0x82 1 'x'.
	frame := []byte{0x82, 0x81, 0, 0, 0, 0, 'x'}
	back := make([]byte, 3)
	rt := func() {
		if _, err := c.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(br, back); err != nil {
			t.Fatal(err)
		}
		if string(back) != "\x82\x01x" {
			t.Fatalf("echoed frame % x; want 82 01 78", back)
		}
	}
	rt()
	n := testing.AllocsPerRun(1000, rt)
	t.Logf("%v allocations per round trip", n)
	if n != 0 {
		t.Errorf("a round trip through a websocket session allocates %v times; want 0", n)
	}
}
