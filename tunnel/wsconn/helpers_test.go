package wsconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// testTimeout bounds every wait in these tests; reaching it is a failure.
const testTimeout = 10 * time.Second

// pair is a client Conn and the server Conn it is connected to.
type pair struct {
	client, server *Conn
	srv            *httptest.Server
}

// newPair starts an httptest server (TLS if useTLS) that upgrades one
// request with sopts, dials it with copts, and returns both ends.
func newPair(t *testing.T, useTLS bool, sopts *Options, copts *DialOptions) *pair {
	t.Helper()
	conns := make(chan net.Conn, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, sopts)
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			close(conns)
			return
		}
		conns <- c
	})
	var srv *httptest.Server
	if useTLS {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)

	if copts == nil {
		copts = &DialOptions{}
	}
	if useTLS && copts.TLSConfig == nil {
		copts.TLSConfig = clientTLS(srv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, wsURL(srv)+"/ws", nil, copts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	s, ok := <-conns
	if !ok {
		t.FailNow()
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return &pair{client: c.(*Conn), server: s.(*Conn), srv: srv}
}

func wsURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// clientTLS trusts srv's certificate.
func clientTLS(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

// goErr runs f on a new goroutine and returns a channel with its error.
func goErr(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// wait returns the value from ch, failing the test after testTimeout.
func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// readAll reads r to EOF with a small buffer (so messages are read in
// pieces) and returns what it read and the error that ended it (nil for
// io.EOF).
func readAll(r io.Reader, bufSize int) ([]byte, error) {
	var out []byte
	buf := make([]byte, bufSize)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// rawHandshake sends a websocket upgrade request on c (a raw TCP conn to
// srv) and reads the 101 response, leaving c at the first frame.
func rawHandshake(t *testing.T, c net.Conn, path string) {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake status %d", resp.StatusCode)
	}
	if br.Buffered() != 0 {
		t.Fatalf("unexpected bytes after the handshake")
	}
}
