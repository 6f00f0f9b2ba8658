package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/serial"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// greeter is a handshaker that greets the viewer before passing bytes,
// so that a test can see the hook's handshaker was the one used.
type greeter struct{ protocols.Handshaker }

func (g greeter) Client(ctx context.Context, client, server net.Conn) (net.Conn, net.Conn, error) {
	if _, err := client.Write([]byte("hello\n")); err != nil {
		return nil, nil, err
	}
	return g.Handshaker.Client(ctx, client, server)
}

// hookCall is what the Handshake hook was called with.
type hookCall struct {
	target    protocols.Target
	token     string
	singleUse bool
}

// TestHandshakeHook: the hook's handshaker serves the connection, it is
// told the target, token and single-use, and its release runs once when
// the connection ends, fails to open, or the hook refuses it (502).
func TestHandshakeHook(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	echo := echoServer(t)
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"ok":      {Type: "serial", Address: echo, Insecure: true},
		"down":    {Type: "serial", Address: closedAddr, Insecure: true},
		"refused": {Type: "console", Address: echo, Insecure: true},
	})
	p.Limiter = nil
	p.Resolver.(*resolver.Static).SetSingleUse(true)
	var (
		mu       sync.Mutex
		calls    []hookCall
		released = map[string]*atomic.Int32{"ok": {}, "down": {}, "refused": {}}
		ended    = make(chan string, 3)
	)
	p.Handshake = func(ctx context.Context, tg protocols.Target, token string, singleUse bool) (protocols.Handshaker, func(), error) {
		mu.Lock()
		calls = append(calls, hookCall{tg, token, singleUse})
		mu.Unlock()
		release := func() { released[token].Add(1); ended <- token }
		if token == "refused" {
			return nil, release, errors.New("not this one")
		}
		hs, rel, err := p.DefaultHandshake(ctx, tg, token, singleUse)
		if rel != nil {
			t.Errorf("DefaultHandshake gave a serial console a release")
		}
		return greeter{hs}, release, err
	}

	c, err := dial(t, wsURL(srv), bearer("ok"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("greeting: %q, %v", line, err)
	}
	c.Write([]byte("ping"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(r, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if n := released["ok"].Load(); n != 0 {
		t.Fatalf("released %d times while the session is open", n)
	}
	c.Close()
	waitReleased(t, ended, "ok")

	for token, want := range map[string]string{"down": "unreachable", "refused": "console type console is not supported by this proxy"} {
		_, err := dial(t, wsURL(srv), bearer(token))
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusBadGateway || !strings.Contains(he.Reason, want) {
			t.Fatalf("%s: got %v, want 502 %q", token, err, want)
		}
		waitReleased(t, ended, token)
	}
	for token, n := range released {
		if n.Load() != 1 {
			t.Errorf("%s: released %d times, want once", token, n.Load())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Fatalf("hook called %d times, want 3", len(calls))
	}
	if c := calls[0]; c.token != "ok" || !c.singleUse || c.target.Address != echo || c.target.Kind != protocols.KindSerial {
		t.Errorf("hook called with %+v", c)
	}
}

func waitReleased(t *testing.T, ended <-chan string, token string) {
	t.Helper()
	select {
	case got := <-ended:
		if got != token {
			t.Fatalf("released %s, want %s", got, token)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: release not called", token)
	}
}

// TestDefaultHandshake: the nil hook's table serves every console kind.
func TestDefaultHandshake(t *testing.T) {
	cfg := func(string) *tls.Config { return &tls.Config{} }
	sessions := &spice.Sessions{}
	p := &Proxy{TLSConfig: cfg, SPICE: sessions}
	ctx := context.Background()
	for _, k := range []protocols.Kind{protocols.KindSerial, protocols.KindConsole} {
		hs, release, err := p.DefaultHandshake(ctx, protocols.Target{Kind: k}, "t", false)
		if _, ok := hs.(serial.Handshaker); !ok || release != nil || err != nil {
			t.Errorf("%s: %T, %v", k, hs, err)
		}
	}
	hs, _, err := p.DefaultHandshake(ctx, protocols.Target{Kind: protocols.KindVNC}, "t", false)
	if v, ok := hs.(*vnc.Handshaker); !ok || v.TLSConfig == nil || v.ViewOnly || err != nil {
		t.Errorf("vnc: %T, %v", hs, err)
	}
	hs, _, err = p.DefaultHandshake(ctx, protocols.Target{Kind: protocols.KindVNC, Role: protocols.RoleView}, "t", false)
	if v, ok := hs.(*vnc.Handshaker); !ok || !v.ViewOnly || err != nil {
		t.Errorf("vnc, view role: %T %+v, %v; want a view-only handshaker", hs, hs, err)
	}
	hs, release, err := p.DefaultHandshake(ctx, protocols.Target{Kind: protocols.KindSPICE}, "t", true)
	if hs == nil || release == nil || err != nil {
		t.Errorf("spice: %T, release %v, %v", hs, release != nil, err)
	} else {
		release() // nothing admitted yet: a no-op
	}
	if p.spice() != sessions {
		t.Error("the SPICE field is not the sessions used")
	}
	if _, _, err := p.DefaultHandshake(ctx, protocols.Target{Kind: "telnet"}, "t", false); err == nil {
		t.Error("telnet: no error")
	}
	// Without a SPICE field the proxy keeps sessions of its own.
	q := &Proxy{}
	if q.spice() == nil || q.spice() != q.spice() {
		t.Error("no stable default SPICE sessions")
	}
}

// TestErrorHandler: a refusal reaches the hook as a *Error carrying its
// cause, after the proxy logged it and counted it for the limiter; what
// the hook writes is what the client gets.
func TestErrorHandler(t *testing.T) {
	p, srv, logs := newProxy(t, map[string]resolver.Console{"ok": {Type: "serial", Address: echoServer(t), Insecure: true}})
	var got []error
	var mu sync.Mutex
	p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("ErrorHandler got %T, want *Error", err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(e.Status)
		fmt.Fprintf(w, "{\"status\":%d,\"reason\":%q}\n", e.Status, e.Reason)
	}
	for i := 0; i < 3; i++ {
		_, err := dial(t, wsURL(srv), bearer(fmt.Sprint("guess-", i)))
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound || he.Reason != `{"status":404,"reason":"unknown token"}` {
			t.Fatalf("unknown token: %v", err)
		}
	}
	_, err := dial(t, wsURL(srv), bearer("guess-3"))
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 3 bad tokens: %v, want 429 (the hook does not bypass the limiter)", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 || !errors.Is(got[0], resolver.ErrNotFound) {
		t.Fatalf("ErrorHandler got %v", got)
	}
	if n := strings.Count(logs.String(), "request refused"); n != 4 {
		t.Fatalf("%d 'request refused' lines, want 4:\n%s", n, logs)
	}
}

// TestDefaultErrorHandler: the status and the reason as one plain-text
// line, which is what wsconn.Dial and browsers read.
func TestDefaultErrorHandler(t *testing.T) {
	_, srv, _ := newProxy(t, nil)
	req, _ := http.NewRequest("GET", srv.URL+"/websockify", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Authorization", "Bearer nope")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || string(body) != "unknown token\n" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("got %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

// TestShutdownWaitsForOpening: Shutdown also waits for a request still
// opening its session, and ends it when its context ends.
func TestShutdownWaitsForOpening(t *testing.T) {
	p, srv, _ := newProxy(t, map[string]resolver.Console{"ok": {Type: "serial", Address: echoServer(t), Insecure: true}})
	entered := make(chan struct{})
	var released atomic.Bool
	p.Handshake = func(ctx context.Context, _ protocols.Target, _ string, _ bool) (protocols.Handshaker, func(), error) {
		close(entered)
		<-ctx.Done() // a handshake that hangs until the proxy gives up
		time.Sleep(50 * time.Millisecond)
		return nil, func() { released.Store(true) }, ctx.Err()
	}
	errc := make(chan error, 1)
	go func() { _, err := dial(t, wsURL(srv), bearer("ok")); errc <- err }()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if !released.Load() {
		t.Fatal("Shutdown returned before the opening request ended")
	}
	if err := <-errc; err == nil {
		t.Fatal("the session opened during shutdown")
	}
}
