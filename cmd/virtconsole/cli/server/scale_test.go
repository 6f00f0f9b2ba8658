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

	proxyproto "github.com/pires/go-proxyproto"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// get sends a GET for path on a new connection from 127.0.0.1, after
// prefix (a PROXY header, or nothing), and returns the status and body.
func get(t *testing.T, addr, path string, prefix []byte) (int, string, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(prefix, "GET "+path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"...)); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// TestReadyzDrainGrace: on SIGTERM (ctx ends) /readyz fails at once with
// "draining" while requests are still served for --drain-grace; then the
// listener closes. Before, /readyz follows the readiness function.
func TestReadyzDrainGrace(t *testing.T) {
	notReady := errors.New("libvirt: none of 1 URIs synced yet")
	var readyErr error = notReady
	d := &daemon{name: "test", addr: "127.0.0.1:0", drainTimeout: time.Second, drainGrace: 1500 * time.Millisecond}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", okHandler)
	mux.HandleFunc("/readyz", d.readyz(func() error { return readyErr }))
	d.handler = mux
	addrc := make(chan net.Addr, 1)
	d.ready = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(context.Background())
	var serveErr error
	stopped := make(chan struct{})
	go func() { serveErr = d.serve(ctx, testFactory(io.Discard).Logger()); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	addr := (<-addrc).String()

	if code, body, err := get(t, addr, "/readyz", nil); err != nil || code != 503 || body != notReady.Error() {
		t.Fatalf("/readyz before sync: %d %q %v; want 503 %q", code, body, err, notReady)
	}
	readyErr = nil
	if code, body, err := get(t, addr, "/readyz", nil); err != nil || code != 200 || body != "ok" {
		t.Fatalf("/readyz when synced: %d %q %v; want 200 ok", code, body, err)
	}
	start := time.Now()
	cancel()
	for time.Since(start) < time.Second {
		if code, body, err := get(t, addr, "/readyz", nil); err != nil || code != 503 || body != "draining" {
			t.Fatalf("/readyz %v into the grace period: %d %q %v; want 503 draining", time.Since(start), code, body, err)
		}
		if code, _, err := get(t, addr, "/healthz", nil); err != nil || code != 200 {
			t.Fatalf("a request %v into the grace period: %d %v; want it served", time.Since(start), code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-stopped
	if serveErr != nil {
		t.Fatal(serveErr)
	}
	if e := time.Since(start); e < d.drainGrace {
		t.Fatalf("stopped after %v, before the grace period of %v ended", e, d.drainGrace)
	}
	if _, _, err := get(t, addr, "/healthz", nil); err == nil {
		t.Fatal("still served after the grace period")
	}
}

// TestTrustedProxies: a connection from a trusted address must start with
// a PROXY v2 header, whose source is the request's RemoteAddr; one from
// any other address is served as it is, and a header it sends is not read
// as one (the request fails); a trusted one without a header is refused.
func TestTrustedProxies(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) })
	header := func() []byte {
		h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
			SourceAddr:      &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 40000},
			DestinationAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 6443}}
		b, err := h.Format()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()

	trusted := startTestDaemon(t, &daemon{handler: echo, trustedProxies: []string{"127.0.0.0/8"}})
	if code, body, err := get(t, trusted, "/", header); err != nil || code != 200 || body != "203.0.113.7:40000" {
		t.Fatalf("trusted, with a header: %d %q %v; want the header's address", code, body, err)
	}
	if code, body, err := get(t, trusted, "/", nil); err == nil {
		t.Fatalf("trusted, without a header: %d %q; want the connection refused", code, body)
	}

	other := startTestDaemon(t, &daemon{handler: echo, trustedProxies: []string{"192.0.2.1", "10.0.0.0/8"}})
	if code, body, err := get(t, other, "/", nil); err != nil || code != 200 || !strings.HasPrefix(body, "127.0.0.1:") {
		t.Fatalf("untrusted, without a header: %d %q %v; want served with the peer's address", code, body, err)
	}
	if code, body, err := get(t, other, "/", header); err == nil && code == 200 {
		t.Fatalf("untrusted, with a header: %d %q; the header was honoured", code, body)
	}

	d := &daemon{handler: echo, trustedProxies: []string{"10.0.0.0/33"}, addr: "127.0.0.1:0"}
	err := d.serve(context.Background(), testFactory(io.Discard).Logger())
	if err == nil || !strings.Contains(err.Error(), "--trusted-proxies") {
		t.Fatalf("a bad CIDR: %v; want a --trusted-proxies error", err)
	}
}

// TestTrustedProxiesFlags: --trusted-proxies and --trust-forwarded do not
// go together (X-Forwarded-For would be read from anyone).
func TestTrustedProxiesFlags(t *testing.T) {
	opts := &ProxyOptions{TrustForwarded: true, Scale: Scale{TrustedProxies: []string{"10.0.0.5"}}}
	err := runProxy(context.Background(), testFactory(io.Discard), opts)
	var fe *cmdutil.FlagError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "--trusted-proxies") {
		t.Fatalf("got %v; want a flag error naming --trusted-proxies", err)
	}
}
