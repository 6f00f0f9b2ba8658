package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startTestDaemon serves d on loopback until the test ends and returns
// its address.
func startTestDaemon(t *testing.T, d *daemon) string {
	t.Helper()
	ready := make(chan net.Addr, 1)
	d.name, d.addr, d.ready, d.drainTimeout = "test", "127.0.0.1:0", func(a net.Addr) { ready <- a }, time.Second
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.serve(ctx, testFactory(io.Discard).Logger()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	})
	select {
	case a := <-ready:
		return a.String()
	case err := <-errc:
		t.Fatal(err)
		return ""
	}
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })

// request sends one keep-alive request with extra header lines on c and
// reads the answer; an error means the server closed the connection.
func request(c net.Conn, br *bufio.Reader, extra string) (*http.Response, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestDaemonClosesIdleConns: a keep-alive connection idle after its
// request (a /healthz, a refusal) is closed by the server.
func TestDaemonClosesIdleConns(t *testing.T) {
	defer func(d time.Duration) { idleTimeout = d }(idleTimeout)
	idleTimeout = 200 * time.Millisecond
	addr := startTestDaemon(t, &daemon{handler: okHandler})
	c := dialFrom(t, "127.0.0.1", addr)
	br := bufio.NewReader(c)
	if _, err := request(c, br, ""); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("an idle keep-alive connection was still open after 10 s")
	}
}

// TestDaemonBoundsHeaders: a request's headers are bounded to a few KiB
// (Go's default is 1 MiB), and a websocket upgrade carrying a token
// cookie still fits.
func TestDaemonBoundsHeaders(t *testing.T) {
	addr := startTestDaemon(t, &daemon{handler: okHandler})
	upgrade := "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n" +
		"Origin: https://console.example.com\r\nUser-Agent: " + strings.Repeat("u", 200) + "\r\n" +
		"Cookie: token=" + strings.Repeat("t", 64) + "; session=" + strings.Repeat("s", 4000) + "\r\n"
	for _, tc := range []struct {
		name   string
		extra  string
		status int
	}{
		{"upgrade with cookies", upgrade, http.StatusOK},
		{"64 KiB of headers", "X-Pad: " + strings.Repeat("p", 64<<10) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		c := dialFrom(t, "127.0.0.1", addr)
		resp, err := request(c, bufio.NewReader(c), tc.extra)
		if err != nil || resp.StatusCode != tc.status {
			t.Errorf("%s: %v %v, want %d", tc.name, resp, err, tc.status)
		}
	}
}

// TestDaemonBoundsConnsPerClient: one address holding many connections
// gets only its share, and another address is still served.
func TestDaemonBoundsConnsPerClient(t *testing.T) {
	const bound = 5
	addr := startTestDaemon(t, &daemon{handler: okHandler, maxConnsPerClient: bound})
	served := 0
	for range 50 {
		// Each completes a request and then idles, holding its slot.
		c := dialFrom(t, "127.0.0.2", addr)
		if _, err := request(c, bufio.NewReader(c), ""); err == nil {
			served++
		}
	}
	if served != bound {
		t.Fatalf("127.0.0.2 got %d connections served, bound is %d", served, bound)
	}
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		if resp, err := request(c, bufio.NewReader(c), ""); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("a well-behaved client: %v %v", resp, err)
		}
	}
}
