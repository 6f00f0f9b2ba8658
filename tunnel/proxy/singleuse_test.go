package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// failingDialer fails its first fails dials, then dials for real.
type failingDialer struct{ fails, dials atomic.Int32 }

func (d *failingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.dials.Add(1)
	if d.fails.Add(-1) >= 0 {
		return nil, errors.New("connection refused (test)")
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

func singleUseProxy(t *testing.T, addr string) (*Proxy, string) {
	t.Helper()
	p, srv, _ := newProxy(t, map[string]resolver.Console{"once": {Type: "serial", Address: addr, Insecure: true}})
	p.Resolver.(*resolver.Static).SetSingleUse(true)
	p.Limiter = nil
	return p, wsURL(srv)
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != status {
		t.Fatalf("dial: %v, want status %d", err, status)
	}
}

func wantEcho(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("hi"))
	got := make([]byte, 2)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hi" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// A single-use token is not spent by a request that opens no session: a
// malformed websocket upgrade (refused before the token is looked at) or
// a console that cannot be reached (the token is given back). The next
// real attempt opens the session, and the one after it gets 404.
func TestSingleUseSpentOnlyBySessions(t *testing.T) {
	p, url := singleUseProxy(t, echoServer(t))

	d := &failingDialer{}
	p.Dialer = d

	// A malformed upgrade: no Sec-WebSocket-Key. The console is not even
	// dialled (for VNC that would be a whole VeNCrypt handshake).
	req, _ := http.NewRequest(http.MethodGet, "http"+url[2:], nil)
	req.Header.Set("Authorization", "Bearer once")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed upgrade: status %d, want 400", resp.StatusCode)
	}
	if n := d.dials.Load(); n != 0 {
		t.Fatalf("malformed upgrade: the console was dialled %d times", n)
	}

	// The console is unreachable once.
	d.fails.Store(1)
	_, err = dial(t, url, bearer("once"))
	wantStatus(t, err, http.StatusBadGateway)

	c, err := dial(t, url, bearer("once"))
	if err != nil {
		t.Fatalf("the real attempt: %v", err)
	}
	defer c.Close()
	wantEcho(t, c)
	_, err = dial(t, url, bearer("once"))
	wantStatus(t, err, http.StatusNotFound)
}

// Of concurrent requests with one single-use token exactly one opens a
// session, also when some fail to reach the console and give it back.
func TestSingleUseConcurrent(t *testing.T) {
	for _, fails := range []int32{0, 3} {
		p, url := singleUseProxy(t, echoServer(t))
		d := &failingDialer{}
		d.fails.Store(fails)
		p.Dialer = d
		const n = 8
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			conns []net.Conn
		)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if c, err := dial(t, url, bearer("once")); err == nil {
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		for _, c := range conns {
			wantEcho(t, c)
			c.Close()
		}
		if len(conns) > 1 {
			t.Fatalf("%d failed dials: %d sessions opened with one single-use token, want at most 1", fails, len(conns))
		}
		// Whatever happened, the token now opens at most one more session.
		c, err := dial(t, url, bearer("once"))
		if len(conns) == 1 {
			wantStatus(t, err, http.StatusNotFound)
			continue
		}
		if err != nil {
			t.Fatalf("%d failed dials: no session opened and the token is spent: %v", fails, err)
		}
		c.Close()
		_, err = dial(t, url, bearer("once"))
		wantStatus(t, err, http.StatusNotFound)
	}
}

// consumeCounter is a single-use resolver that cannot give tokens back
// (like the libvirt resolver's) and counts what it consumes.
type consumeCounter struct {
	resolver.Resolver
	consumed atomic.Int32
}

func (c *consumeCounter) SingleUse() bool { return true }
func (c *consumeCounter) Consume(context.Context, string) error {
	c.consumed.Add(1)
	return nil
}

// A target that the proxy's configuration cannot serve (cleartext not
// allowed, no TLS credentials) is refused before a token that cannot be
// given back is consumed.
func TestSingleUseCheapChecksFirst(t *testing.T) {
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"cleartext": {Type: "serial", Address: "127.0.0.1:1", Insecure: true},
		"tls":       {Type: "serial", Address: "127.0.0.1:1"},
	})
	cc := &consumeCounter{Resolver: p.Resolver}
	p.Resolver = cc
	p.Limiter = nil
	p.AllowInsecureTargets = false
	for _, tok := range []string{"cleartext", "tls"} {
		_, err := dial(t, wsURL(srv), bearer(tok))
		wantStatus(t, err, http.StatusBadGateway)
	}
	if n := cc.consumed.Load(); n != 0 {
		t.Fatalf("%d tokens consumed by requests the proxy could never serve", n)
	}
}
