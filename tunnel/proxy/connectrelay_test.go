package proxy

import (
	"bufio"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
)

// TestConnectRelay: a passthrough gateway relays a single-use token's
// tunnels, bytes as they are, to its SPICE console: the first CONNECT
// spends the token and opens a grant for its client address, which later
// CONNECTs from that address use until it expires; from another address
// and after it, 407. A console that is not a SPICE TLS port is refused
// before the token is spent; so is a share link.
func TestConnectRelay(t *testing.T) {
	echo := echoServer(t) // QEMU's TLS port, which the relay does not read
	st, err := resolver.NewStatic(map[string]resolver.Console{
		"relay-1": {Type: "spice", Address: echo},
		"vnc-1":   {Type: "vnc", Address: echo},
		"plain-1": {Type: "spice", Address: echo, Insecure: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	st.SetSingleUse(true)
	logs := &logBuffer{}
	p := &Proxy{Resolver: st, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	const ttl = 500 * time.Millisecond
	srv := httptest.NewServer(&ConnectGateway{Proxy: p, Passthrough: true, GrantTTL: ttl})
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	connect := func(from, token string) (int, string, net.Conn) {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cred := base64.StdEncoding.EncodeToString([]byte(ConnectUser + ":" + EncodeConnectToken(token)))
		io.WriteString(c, "CONNECT "+ConnectTarget+" HTTP/1.0\r\nProxy-Authorization: Basic "+cred+"\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			if br.Buffered() != 0 {
				t.Fatalf("%d bytes after the 200", br.Buffered())
			}
			return resp.StatusCode, "", c // the tunnel: no body
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return resp.StatusCode, strings.TrimSpace(string(body)), c
	}
	relays := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "\x52\x45\x44\x51 link")
		got := make([]byte, 9)
		_, err := io.ReadFull(c, got)
		return err == nil && string(got) == "\x52\x45\x44\x51 link"
	}

	for _, tok := range []string{"vnc-1", "plain-1"} {
		if code, reason, _ := connect("127.0.0.1", tok); code != http.StatusBadGateway || !strings.Contains(reason, "not a SPICE TLS port") {
			t.Errorf("%s: %d %q, want 502", tok, code, reason)
		}
		if _, err := st.Resolve(t.Context(), tok); err != nil {
			t.Errorf("%s was spent by a refused CONNECT: %v", tok, err)
		}
	}
	opened := time.Now()
	code, _, first := connect("127.0.0.1", "relay-1")
	if code != http.StatusOK || !relays(first) {
		t.Fatalf("first CONNECT: %d, or no relay", code)
	}
	if code, _, c := connect("127.0.0.1", "relay-1"); code != http.StatusOK || !relays(c) {
		t.Errorf("a CONNECT within the grant from its address: %d, or no relay", code)
	}
	if code, reason, _ := connect("127.0.0.2", "relay-1"); code != http.StatusProxyAuthRequired || !strings.Contains(reason, "another client address") {
		t.Errorf("a CONNECT within the grant from another address: %d %q, want 407", code, reason)
	}
	if time.Since(opened) >= ttl {
		t.Fatalf("the checks within the %v grant took %v", ttl, time.Since(opened))
	}
	time.Sleep(time.Until(opened.Add(ttl + 50*time.Millisecond)))
	if code, _, _ := connect("127.0.0.1", "relay-1"); code != http.StatusProxyAuthRequired {
		t.Errorf("a CONNECT after the grant: %d, want 407", code)
	}
	if !relays(first) {
		t.Error("the first tunnel ended with the grant")
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `msg="session start"`) && (!strings.Contains(l, "auth=passthrough") || !strings.Contains(l, "session=relay-")) {
			t.Errorf("session start line: %s", l)
		}
	}
}
