package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// echoServer is a TCP console that echoes what it reads.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newProxy(t *testing.T, tokens map[string]resolver.Console) (*Proxy, *httptest.Server, *logBuffer) {
	t.Helper()
	st, err := resolver.NewStatic(tokens)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	p := &Proxy{
		Resolver:             st,
		AllowInsecureTargets: true,
		Logger:               slog.New(slog.NewTextHandler(logs, nil)),
		Limiter:              NewLimiter(3, time.Minute),
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv, logs
}

func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/websockify"
}

func dial(t *testing.T, url string, h http.Header) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return wsconn.Dial(ctx, url, h, &wsconn.DialOptions{Subprotocols: []string{"binary"}})
}

func bearer(tok string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	return h
}

// Each token source works and bytes pass both ways.
func TestTokenSources(t *testing.T) {
	addr := echoServer(t)
	_, srv, logs := newProxy(t, map[string]resolver.Console{"tok-1": {Type: "serial", Address: addr, Insecure: true}})
	cookie := http.Header{}
	cookie.Set("Cookie", "token=tok-1")
	for name, tc := range map[string]struct {
		url string
		h   http.Header
	}{
		"bearer": {wsURL(srv), bearer("tok-1")},
		"cookie": {wsURL(srv), cookie},
		"query":  {wsURL(srv) + "?token=tok-1", nil},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dial(t, tc.url, tc.h)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("ping"))
			got := make([]byte, 4)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "ping" {
				t.Fatalf("echo: %q, %v", got, err)
			}
		})
	}
	if strings.Contains(logs.String(), "tok-1") {
		t.Fatalf("token in log:\n%s", logs.String())
	}
}

// Failures before the upgrade are HTTP statuses with a reason.
func TestStatuses(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	addr := echoServer(t)
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"down":   {Type: "serial", Address: closedAddr, Insecure: true},
		"secure": {Type: "serial", Address: addr},
		"vnc":    {Type: "vnc", Address: addr, Insecure: true},
	})
	p.Limiter = nil
	p.Handshake = func(ctx context.Context, t protocols.Target, token string, singleUse bool) (protocols.Handshaker, func(), error) {
		if t.Kind == protocols.KindVNC {
			return nil, nil, errors.New("no VNC here") // the default serves VNC
		}
		return p.DefaultHandshake(ctx, t, token, singleUse)
	}
	origin := bearer("down")
	origin.Set("Origin", "https://evil.example")
	for name, tc := range map[string]struct {
		h      http.Header
		status int
		reason string
	}{
		"no token":       {nil, 401, "no token"},
		"unknown token":  {bearer("nope"), 404, "unknown token"},
		"unreachable":    {bearer("down"), 502, "unreachable"},
		"no TLS creds":   {bearer("secure"), 502, "--connect-tls-dir"},
		"no handshaker":  {bearer("vnc"), 502, "not supported"},
		"foreign origin": {origin, 403, "origin"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := dial(t, wsURL(srv), tc.h)
			var he *wsconn.HandshakeError
			if !errors.As(err, &he) || he.StatusCode != tc.status || !strings.Contains(he.Reason, tc.reason) {
				t.Fatalf("got %v, want %d %q", err, tc.status, tc.reason)
			}
		})
	}
	// Not a websocket request at all.
	resp, err := http.Get(srv.URL + "/websockify")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET: %d", resp.StatusCode)
	}
}

func TestResolverUnavailable(t *testing.T) {
	p := &Proxy{Resolver: resolver.ResolverFunc(func(context.Context, string) (protocols.Target, error) {
		return protocols.Target{}, fmt.Errorf("libvirt down: %w", resolver.ErrUnavailable)
	}), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(p)
	defer srv.Close()
	_, err := dial(t, wsURL(srv), bearer("x"))
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("got %v, want 503", err)
	}
}

// Guessing tokens gets a client 429 after the limit, and only that
// client; a valid token from the same address (a user behind the same
// NAT) still opens its session.
func TestLimiter(t *testing.T) {
	_, srv, _ := newProxy(t, map[string]resolver.Console{"ok": {Type: "serial", Address: echoServer(t), Insecure: true}})
	var he *wsconn.HandshakeError
	for i := 0; i < 3; i++ {
		_, err := dial(t, wsURL(srv), bearer(fmt.Sprint("guess-", i)))
		if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
			t.Fatalf("guess %d: %v, want 404", i, err)
		}
	}
	_, err := dial(t, wsURL(srv), bearer("guess-3"))
	if !errors.As(err, &he) || he.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 3 bad tokens: %v, want 429", err)
	}
	c, err := dial(t, wsURL(srv), bearer("ok"))
	if err != nil {
		t.Fatalf("a valid token after its address's 3 bad ones: %v", err)
	}
	c.Write([]byte("x"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := dial(t, wsURL(srv), nil); !errors.As(err, &he) || he.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("no token, after 4 bad ones: %v, want 429", err)
	}
	l := NewLimiter(1, time.Minute)
	l.Failed("10.0.0.1")
	if l.Allow("10.0.0.1") || !l.Allow("10.0.0.2") {
		t.Fatal("limiter is not per client")
	}
	now := time.Now()
	l.now = func() time.Time { return now.Add(2 * time.Minute) }
	if !l.Allow("10.0.0.1") {
		t.Fatal("limiter did not forget after the window")
	}
	small := &Limiter{Failures: 1, Window: time.Minute, MaxClients: 2}
	for i := 0; i < 10; i++ {
		small.Failed(fmt.Sprint("h", i))
	}
	if len(small.clients) > 2 {
		t.Fatalf("limiter holds %d clients, bound is 2", len(small.clients))
	}
}

// Shutdown refuses new sessions, and closes running ones when its
// context ends.
func TestShutdown(t *testing.T) {
	p, srv, _ := newProxy(t, map[string]resolver.Console{"ok": {Type: "serial", Address: echoServer(t), Insecure: true}})
	c, err := dial(t, wsURL(srv), bearer("ok"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	if p.Active() != 1 {
		t.Fatalf("sessions = %d", p.Active())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	if p.Active() != 0 {
		t.Fatalf("sessions after shutdown = %d", p.Active())
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("session still open after shutdown")
	}
	_, err = dial(t, wsURL(srv), bearer("ok"))
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("new session during shutdown: %v, want 503", err)
	}
}

func TestToken(t *testing.T) {
	r := httptest.NewRequest("GET", "/websockify?token=q", nil)
	if Token(r) != "q" {
		t.Fatal("query")
	}
	r.AddCookie(&http.Cookie{Name: "token", Value: "c"})
	if Token(r) != "c" {
		t.Fatal("cookie before query")
	}
	r.Header.Set("Authorization", "bearer  b ")
	if Token(r) != "b" {
		t.Fatal("bearer first")
	}
}

// MaxSessions bounds concurrent sessions: one more gets 503, and a slot
// frees when a session ends.
func TestMaxSessions(t *testing.T) {
	p, srv, _ := newProxy(t, map[string]resolver.Console{"ok": {Type: "serial", Address: echoServer(t), Insecure: true}})
	p.MaxSessions = 1
	c, err := dial(t, wsURL(srv), bearer("ok"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	_, err = dial(t, wsURL(srv), bearer("ok"))
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !strings.Contains(he.Reason, "too many sessions") {
		t.Fatalf("second session: %v, want 503", err)
	}
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c2, err := dial(t, wsURL(srv), bearer("ok"))
		if err == nil {
			c2.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after the first ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// X-Forwarded-Host counts for the Origin check only when trusted.
func TestTrustForwarded(t *testing.T) {
	p := &Proxy{}
	r := httptest.NewRequest("GET", "/websockify", nil)
	r.Host = "10.0.0.1:6443"
	r.Header.Set("Origin", "https://console.example")
	r.Header.Set("X-Forwarded-Host", "console.example")
	if p.checkOrigin(r) {
		t.Fatal("untrusted X-Forwarded-Host was honoured")
	}
	p.TrustForwarded = true
	if !p.checkOrigin(r) {
		t.Fatal("trusted X-Forwarded-Host was ignored")
	}
	r.Header.Set("Origin", "https://evil.example")
	if p.checkOrigin(r) {
		t.Fatal("foreign origin accepted")
	}
}

// TestRefusalLogSampled: one client repeating a refused request 10,000
// times writes a bounded number of log lines, which say how many they
// left out; another client's refusals are still logged.
func TestRefusalLogSampled(t *testing.T) {
	p, _, logs := newProxy(t, nil)
	now := time.Now()
	p.refusals.now = func() time.Time { return now }
	refuse := func(addr string) {
		r := httptest.NewRequest("GET", "/websockify", nil) // not an upgrade: 400
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Fatalf("status %d", w.Code)
		}
	}
	for i := range 10000 {
		refuse(fmt.Sprintf("192.0.2.1:%d", 1024+i%50000))
	}
	lines := strings.Count(logs.String(), "\n")
	if lines > 11 {
		t.Fatalf("10000 refusals from one client wrote %d log lines", lines)
	}
	if !strings.Contains(logs.String(), "the rest are not logged") {
		t.Fatalf("no line says the rest are left out:\n%s", logs)
	}
	refuse("198.51.100.7:1234")
	if !strings.Contains(logs.String(), "peer=198.51.100.7:1234") {
		t.Fatalf("another client's refusal was not logged:\n%s", logs)
	}
	// A minute on, the client's next refusal is logged with the count.
	now = now.Add(time.Minute)
	refuse("192.0.2.1:1")
	if !strings.Contains(logs.String(), "not_logged_before=9990") {
		t.Fatalf("the next line does not count the lines left out:\n%s", logs)
	}
}

// dialCounter is a Dialer that counts its dials.
type dialCounter struct {
	mu sync.Mutex
	n  int
}

func (d *dialCounter) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

// TestConsoleAddressWithheld: a 502's reason names no internal address,
// which the proxy logs instead; an address that holds the token is
// neither dialled nor shown nor logged.
func TestConsoleAddressWithheld(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()
	addr := echoServer(t)
	const secret = "s3cret-token-0123456789"
	p, srv, logs := newProxy(t, map[string]resolver.Console{
		"down":   {Type: "serial", Address: closedAddr, Insecure: true},
		"secure": {Type: "serial", Address: addr},
		secret:   {Type: "serial", Address: secret + ".console.example:5900", Insecure: true},
	})
	p.Limiter = nil
	dialer := &dialCounter{}
	p.Dialer = dialer
	for token, want := range map[string]string{
		"down":   "console unreachable",
		"secure": "console needs TLS but the proxy has no client credentials; start it with --connect-tls-dir",
		secret:   "console address invalid",
	} {
		_, err := dial(t, wsURL(srv), bearer(token))
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusBadGateway || he.Reason != want {
			t.Errorf("%s: got %v, want 502 %q", token, err, want)
		}
	}
	for _, a := range []string{closedAddr, addr} {
		if !strings.Contains(logs.String(), a) {
			t.Errorf("the log does not name console %s:\n%s", a, logs)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the token is in the log:\n%s", logs)
	}
	dialer.mu.Lock()
	defer dialer.mu.Unlock()
	if dialer.n != 1 {
		t.Errorf("%d dials, want 1 (only the closed port's)", dialer.n)
	}
}

// TestSessionShares: one token, and one client address, get only their
// share of MaxSessions; other tokens and addresses still get in, and an
// ended session gives its share back.
func TestSessionShares(t *testing.T) {
	echo := echoServer(t)
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"a": {Type: "serial", Address: echo, Insecure: true},
		"b": {Type: "serial", Address: echo, Insecure: true},
	})
	p.MaxSessions, p.MaxSessionsPerToken, p.MaxSessionsPerClient = 10, 2, 3
	p.TrustForwarded = true // to play a second client
	from := func(tok, client string) http.Header {
		h := bearer(tok)
		if client != "" {
			h.Set("X-Forwarded-For", client)
		}
		return h
	}
	open := func(h http.Header) net.Conn {
		t.Helper()
		c, err := dial(t, wsURL(srv), h)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.Write([]byte("x"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	refused := func(h http.Header, why string) {
		t.Helper()
		_, err := dial(t, wsURL(srv), h)
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusServiceUnavailable || !strings.Contains(he.Reason, why) {
			t.Fatalf("got %v, want 503 %q", err, why)
		}
	}
	first := open(from("a", ""))
	open(from("a", ""))
	refused(from("a", ""), "with this token")
	refused(from("a", "192.0.2.9"), "with this token")
	open(from("b", ""))
	refused(from("b", ""), "from 127.0.0.1")
	open(from("b", "192.0.2.9")) // another client, another token: in

	first.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := dial(t, wsURL(srv), from("a", "192.0.2.10"))
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the token's share did not come back after its session ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
