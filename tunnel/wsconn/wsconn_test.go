package wsconn

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestEcho(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		name := "plain"
		if useTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			p := newPair(t, useTLS, nil, nil)
			// The server echoes until EOF, then half-closes.
			echoed := goErr(func() error {
				buf := make([]byte, 3000)
				for {
					n, err := p.server.Read(buf)
					if n > 0 {
						if _, werr := p.server.Write(buf[:n]); werr != nil {
							return werr
						}
					}
					if err == io.EOF {
						return p.server.CloseWrite()
					}
					if err != nil {
						return err
					}
				}
			})
			want := make([]byte, 1<<20)
			rand.Read(want)
			got := make(chan []byte, 1)
			go func() {
				b, err := readAll(p.client, 1500)
				if err != nil {
					t.Errorf("client read: %v", err)
				}
				got <- b
			}()
			// Writes of random sizes, concurrent with the client's reads.
			for rest := want; len(rest) > 0; {
				n := min(len(rest), 1+mrand.IntN(70000))
				if _, err := p.client.Write(rest[:n]); err != nil {
					t.Fatalf("client write: %v", err)
				}
				rest = rest[n:]
			}
			if err := p.client.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			if err := wait(t, echoed, "the echo"); err != nil {
				t.Fatalf("server: %v", err)
			}
			if b := wait(t, got, "the client's reads"); !bytes.Equal(b, want) {
				t.Fatalf("echo differs: got %d bytes, want %d", len(b), len(want))
			}
		})
	}
}

func TestLargeMessageReadInPieces(t *testing.T) {
	p := newPair(t, true, nil, nil)
	want := make([]byte, 300<<10)
	rand.Read(want)
	written := goErr(func() error {
		if _, err := p.server.Write(want); err != nil { // one message
			return err
		}
		return p.server.CloseWrite()
	})
	var got []byte
	buf := make([]byte, 1000)
	reads := 0
	for {
		n, err := p.client.Read(buf)
		got = append(got, buf[:n]...)
		reads++
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	if err := wait(t, written, "the write"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	if reads < len(want)/len(buf) {
		t.Fatalf("%d reads for %d bytes in a %d-byte buffer", reads, len(want), len(buf))
	}
}

func TestManySmallWrites(t *testing.T) {
	p := newPair(t, false, nil, nil)
	var want bytes.Buffer
	for i := range 20000 {
		want.WriteByte(byte(i))
		if i%3 == 0 {
			want.WriteString("xy")
		}
	}
	written := goErr(func() error {
		data := want.Bytes()
		for len(data) > 0 {
			n := min(len(data), 1+mrand.IntN(4))
			if _, err := p.client.Write(data[:n]); err != nil {
				return err
			}
			data = data[n:]
		}
		return p.client.CloseWrite()
	})
	got, err := readAll(p.server, 64<<10)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := wait(t, written, "the writes"); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, want %d", len(got), want.Len())
	}
}

func TestCloseWriteHalfClose(t *testing.T) {
	p := newPair(t, true, nil, nil)
	if _, err := p.client.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	if err := p.client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := p.client.CloseWrite(); err != nil {
		t.Fatalf("second CloseWrite: %v", err)
	}
	if _, err := p.client.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after CloseWrite: %v, want net.ErrClosed", err)
	}

	got, err := readAll(p.server, 100)
	if err != nil || string(got) != "request" {
		t.Fatalf("server read %q, %v; want %q, EOF", got, err, "request")
	}
	if n, err := p.server.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Fatalf("server read after EOF: %d, %v", n, err)
	}
	// The half-closed client still reads what the server sends.
	if _, err := p.server.Write([]byte("response")); err != nil {
		t.Fatalf("server write after the client's close frame: %v", err)
	}
	if err := p.server.Close(); err != nil {
		t.Fatal(err)
	}
	got, err = readAll(p.client, 100)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v; want %q, EOF", got, err, "response")
	}
}

// TestCloseCodes checks how the peer's close frames read, using
// gorilla/websocket directly as the peer.
func TestCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		frame   []byte // nil: no payload
		wantEOF bool
		want    string // in the error otherwise
		code    int
	}{
		{"normal", websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), true, "", 0},
		{"going away", websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), true, "", 0},
		{"no status", []byte{}, true, "", 0},
		{"internal error", websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "qemu went away"), false, "1011 (internal error): qemu went away", 1011},
		{"policy", websocket.FormatCloseMessage(websocket.ClosePolicyViolation, ""), false, "1008 (policy violation)", 1008},
		{"private", websocket.FormatCloseMessage(4999, "custom"), false, "code 4999: custom", 4999},
		{"peer timeout", websocket.FormatCloseMessage(ClosePeerTimeout, "quiet"), false, "code 4000 (peer timeout): quiet", 4000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns := make(chan net.Conn, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Upgrade(w, r, nil)
				if err != nil {
					t.Errorf("Upgrade: %v", err)
					return
				}
				conns <- c
			}))
			defer srv.Close()
			peer, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			c := wait(t, conns, "the upgrade")
			defer c.Close()

			// Text is data too, and a message may be empty.
			peer.WriteMessage(websocket.TextMessage, []byte("text "))
			peer.WriteMessage(websocket.BinaryMessage, nil)
			peer.WriteMessage(websocket.BinaryMessage, []byte("binary"))
			peer.WriteControl(websocket.CloseMessage, tc.frame, time.Now().Add(time.Second))

			got, err := readAll(c, 3)
			if string(got) != "text binary" {
				t.Errorf("read %q before the close", got)
			}
			if tc.wantEOF {
				if err != nil {
					t.Fatalf("got %v, want io.EOF", err)
				}
				return
			}
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("got %v, want a *CloseError with code %d", err, tc.code)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if _, err2 := c.Read(make([]byte, 10)); err2 != err {
				t.Fatalf("second read: %v, want the same error", err2)
			}
		})
	}
}

func TestTransportEndsWithoutCloseFrame(t *testing.T) {
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := Upgrade(w, r, nil)
		conns <- c
	}))
	defer srv.Close()
	raw, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rawHandshake(t, raw, "/")
	c := wait(t, conns, "the upgrade")
	defer c.Close()
	raw.Close()
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestSubprotocols(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server []string
		offer  []string // as separate tokens
		header string   // as one header value
		want   string
	}{
		{name: "binary", offer: []string{"binary"}, want: "binary"},
		{name: "binary, base64 in one header", header: "binary, base64", want: "binary"},
		{name: "base64 first", offer: []string{"base64", "binary"}, want: "binary"},
		{name: "none offered", want: ""},
		{name: "no overlap", offer: []string{"base64"}, want: ""},
		{name: "server preference", server: []string{"b", "a"}, offer: []string{"a", "b"}, want: "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conns := make(chan net.Conn, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := Upgrade(w, r, &Options{Subprotocols: tc.server})
				if err != nil {
					t.Errorf("Upgrade: %v", err)
					close(conns)
					return
				}
				conns <- c
			}))
			defer srv.Close()
			var h http.Header
			if tc.header != "" {
				h = http.Header{"Sec-Websocket-Protocol": {tc.header}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			c, err := Dial(ctx, wsURL(srv), h, &DialOptions{Subprotocols: tc.offer})
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			s, ok := <-conns
			if !ok {
				t.FailNow()
			}
			defer s.Close()
			if got := c.(*Conn).Subprotocol(); got != tc.want {
				t.Errorf("client subprotocol %q, want %q", got, tc.want)
			}
			if got := s.(*Conn).Subprotocol(); got != tc.want {
				t.Errorf("server subprotocol %q, want %q", got, tc.want)
			}
		})
	}
}

func TestHandshakeError(t *testing.T) {
	long := strings.Repeat("é", 300)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/401":
			http.Error(w, "no token: pass --token-file", http.StatusUnauthorized)
		case "/404":
			http.Error(w, "  unknown token  \nsecond line", http.StatusNotFound)
		case "/502":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "console 10.0.0.1:5901 unreachable\x1b[31m red\r\n")
		case "/503":
			w.WriteHeader(http.StatusServiceUnavailable) // no body
		case "/long":
			http.Error(w, long, http.StatusNotFound)
		case "/origin":
			Upgrade(w, r, &Options{CheckOrigin: func(*http.Request) bool { return false }})
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		path   string
		status int
		reason string
	}{
		{"/401", 401, "no token: pass --token-file"},
		{"/404", 404, "unknown token"},
		{"/502", 502, "console 10.0.0.1:5901 unreachable [31m red"},
		{"/503", 503, ""},
		{"/origin", 403, "websocket: request origin not allowed"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			_, err := Dial(ctx, wsURL(srv)+tc.path+"?token=s3cret", nil, nil)
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("got %v, want a *HandshakeError", err)
			}
			if he.StatusCode != tc.status || he.Reason != tc.reason {
				t.Fatalf("got %d %q, want %d %q", he.StatusCode, he.Reason, tc.status, tc.reason)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q contains the query", err)
			}
		})
	}
	t.Run("long reason", func(t *testing.T) {
		_, err := Dial(context.Background(), wsURL(srv)+"/long", nil, nil)
		var he *HandshakeError
		if !errors.As(err, &he) {
			t.Fatalf("got %v", err)
		}
		if len(he.Reason) > maxReason+len("…") || !strings.HasPrefix(long, strings.TrimSuffix(he.Reason, "…")) {
			t.Fatalf("reason not bounded at a rune boundary: %d bytes %q", len(he.Reason), he.Reason)
		}
	})
}

func TestDialErrorsHideQuery(t *testing.T) {
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, u := range []string{
		"ws://" + addr + "/websockify?token=s3cret",
		"wss://user:s3cret@" + addr + "/?token=s3cret",
		"ws://" + addr + "/%zz?token=s3cret", // malformed
		"ftp://" + addr + "/?token=s3cret",
	} {
		_, err := Dial(context.Background(), u, nil, nil)
		if err == nil {
			t.Fatalf("Dial %s succeeded", u)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("error %q contains the secret", err)
		}
	}
}

func TestDialCancel(t *testing.T) {
	// A server that accepts and never answers the handshake.
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
		c.Read(make([]byte, 100)) // the request has arrived
		cancel()
		io.Copy(io.Discard, c)
	}()
	done := goErr(func() error {
		_, err := Dial(ctx, "ws://"+l.Addr().String()+"/", nil, nil)
		return err
	})
	if err := wait(t, done, "Dial to return"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// TestDeadPeer checks that a peer which stops answering pings is given up
// after the dead-peer timeout, from either side.
func TestDeadPeer(t *testing.T) {
	const keepAlive, deadPeer = 20 * time.Millisecond, 200 * time.Millisecond

	t.Run("server side", func(t *testing.T) {
		conns := make(chan net.Conn, 1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := Upgrade(w, r, &Options{KeepAlive: keepAlive, DeadPeerTimeout: deadPeer})
			conns <- c
		}))
		defer srv.Close()
		raw, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		rawHandshake(t, raw, "/") // then silence: no pongs
		c := wait(t, conns, "the upgrade")
		checkDeadPeer(t, c, deadPeer)
		// The peer was told why, in a close frame after the pings.
		raw.SetReadDeadline(time.Now().Add(testTimeout))
		code, reason := readCloseFrame(t, raw)
		if code != ClosePeerTimeout || !strings.Contains(reason, "nothing received") {
			t.Fatalf("close frame %d %q, want %d and the reason", code, reason, ClosePeerTimeout)
		}
	})

	t.Run("client side", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		// A server that upgrades by hand, then neither reads nor writes.
		done := make(chan struct{})
		defer close(done)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, brw, _ := w.(http.Hijacker).Hijack()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-Websocket-Key")) + "\r\n\r\n")
			brw.Flush()
			<-done
			raw.Close()
		})}
		go srv.Serve(l)
		defer srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		c, err := Dial(ctx, "ws://"+l.Addr().String()+"/", nil, &DialOptions{KeepAlive: keepAlive, DeadPeerTimeout: deadPeer})
		if err != nil {
			t.Fatal(err)
		}
		checkDeadPeer(t, c, deadPeer)
	})
}

func checkDeadPeer(t *testing.T, c net.Conn, deadPeer time.Duration) {
	t.Helper()
	start := time.Now()
	read := goErr(func() error { _, err := c.Read(make([]byte, 10)); return err })
	err := wait(t, read, "the dead-peer timeout")
	if !errors.Is(err, ErrPeerTimeout) {
		t.Fatalf("got %v, want ErrPeerTimeout", err)
	}
	if !strings.Contains(err.Error(), "stopped answering") {
		t.Fatalf("error %q does not say the peer stopped answering", err)
	}
	if d := time.Since(start); d < deadPeer {
		t.Fatalf("gave up after %v, before the timeout %v", d, deadPeer)
	}
	// The Conn was closed.
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after the dead-peer timeout: %v, want net.ErrClosed", err)
	}
}

func TestKeepAliveKeepsQuietConnOpen(t *testing.T) {
	const keepAlive, deadPeer = 20 * time.Millisecond, 400 * time.Millisecond
	p := newPair(t, false,
		&Options{KeepAlive: keepAlive, DeadPeerTimeout: deadPeer},
		&DialOptions{KeepAlive: keepAlive, DeadPeerTimeout: deadPeer})
	// Both sides read (that is what answers pings); nobody writes data for
	// three dead-peer timeouts.
	serverRead := goErr(func() error { _, err := p.server.Read(make([]byte, 10)); return err })
	p.client.SetReadDeadline(time.Now().Add(3 * deadPeer))
	_, err := p.client.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("client read: %v, want the read deadline to expire", err)
	}
	select {
	case err := <-serverRead:
		t.Fatalf("server read ended: %v", err)
	default:
	}
	p.client.Close()
	if err := wait(t, serverRead, "the server's read"); err != io.EOF {
		t.Fatalf("server read after the client's Close: %v, want io.EOF", err)
	}
}

func TestDeadlines(t *testing.T) {
	t.Run("read deadline in the past", func(t *testing.T) {
		p := newPair(t, false, nil, nil)
		p.client.SetReadDeadline(time.Now().Add(-time.Second))
		_, err := p.client.Read(make([]byte, 10))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("got %v, want a timeout wrapping os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("read deadline set during a read", func(t *testing.T) {
		p := newPair(t, true, nil, nil)
		read := goErr(func() error { _, err := p.client.Read(make([]byte, 10)); return err })
		p.client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if err := wait(t, read, "the read"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v, want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("cleared read deadline", func(t *testing.T) {
		p := newPair(t, false, nil, nil)
		p.client.SetReadDeadline(time.Now().Add(time.Hour))
		p.client.SetDeadline(time.Time{})
		read := goErr(func() error {
			b, err := readAll(p.client, 10)
			if err == nil && string(b) != "late data" {
				err = errors.New("read " + string(b))
			}
			return err
		})
		p.server.Write([]byte("late data"))
		p.server.CloseWrite()
		if err := wait(t, read, "the read"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		p := newPair(t, false, nil, nil)
		// The server does not read: writes stall once the socket buffers
		// are full, and the deadline ends the stalled one.
		p.client.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 64<<10)
		written := goErr(func() error {
			for {
				if _, err := p.client.Write(buf); err != nil {
					return err
				}
			}
		})
		err := wait(t, written, "the write deadline")
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v, want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("write deadline set during a write", func(t *testing.T) {
		p := newPair(t, true, nil, nil)
		// The server does not read, so the writes soon block on full
		// socket buffers; the deadline must reach the blocked one.
		started := make(chan struct{})
		buf := make([]byte, 64<<10)
		written := goErr(func() error {
			for i := 0; ; i++ {
				if i == 1 {
					close(started)
				}
				if _, err := p.client.Write(buf); err != nil {
					return err
				}
			}
		})
		wait(t, started, "the first write")
		p.client.SetWriteDeadline(time.Now())
		if err := wait(t, written, "the write"); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("got %v, want os.ErrDeadlineExceeded", err)
		}
	})
}

func TestCloseUnblocks(t *testing.T) {
	p := newPair(t, true, nil, nil)
	read := goErr(func() error { _, err := p.client.Read(make([]byte, 10)); return err })
	p.client.Close()
	if err := wait(t, read, "the read"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if _, err := p.client.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v, want net.ErrClosed", err)
	}
	if err := p.client.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
	// The peer saw a normal close.
	if _, err := p.server.Read(make([]byte, 10)); err != io.EOF {
		t.Fatalf("peer read: %v, want io.EOF", err)
	}
}

func TestAddrs(t *testing.T) {
	p := newPair(t, true, nil, nil)
	if p.server.RemoteAddr().String() != p.client.LocalAddr().String() {
		t.Errorf("server RemoteAddr %v, client LocalAddr %v", p.server.RemoteAddr(), p.client.LocalAddr())
	}
	if p.client.RemoteAddr().String() != p.srv.Listener.Addr().String() {
		t.Errorf("client RemoteAddr %v, server at %v", p.client.RemoteAddr(), p.srv.Listener.Addr())
	}
}

// TestConcurrentReadWrite runs reads, writes, deadline changes and pings
// at once, for the race detector.
func TestConcurrentReadWrite(t *testing.T) {
	p := newPair(t, true, &Options{KeepAlive: time.Millisecond}, &DialOptions{KeepAlive: time.Millisecond})
	const total = 400 * 10000
	var results []<-chan error
	for _, c := range []*Conn{p.client, p.server} {
		results = append(results, goErr(func() error {
			buf := make([]byte, 10000)
			for sent := 0; sent < total; sent += len(buf) {
				c.SetWriteDeadline(time.Now().Add(testTimeout))
				if _, err := c.Write(buf); err != nil {
					return err
				}
			}
			return c.CloseWrite()
		}))
	}
	for _, c := range []*Conn{p.client, p.server} {
		results = append(results, goErr(func() error {
			n := 0
			buf := make([]byte, 7000)
			for {
				c.SetReadDeadline(time.Now().Add(testTimeout))
				m, err := c.Read(buf)
				n += m
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
			}
			if n != total {
				return fmt.Errorf("read %d bytes, want %d", n, total)
			}
			return nil
		}))
	}
	for _, r := range results {
		if err := wait(t, r, "the transfer"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSanitize(t *testing.T) {
	for in, want := range map[string]string{
		"  plain  ":              "plain",
		"tab\there":              "tab here",
		"esc\x1b[2Jclear":        "esc [2Jclear",
		"bad\xffutf8":            "bad\uFFFDutf8",
		strings.Repeat("a", 250): strings.Repeat("a", 200) + "…",
	} {
		if got := sanitize(in, 200); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}
