package tunnel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

func clientTLSConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool}
}

type joinResult struct {
	stats tunnel.Stats
	err   error
}

// wsSession is client ⇄ [websocket over TLS] ⇄ Join ⇄ [TCP] ⇄ sink.
type wsSession struct {
	client, sink net.Conn
	result       chan joinResult
}

func startWSSession(t *testing.T) *wsSession {
	t.Helper()
	return startWSSessionDial(t, nil)
}

func startWSSessionDial(t *testing.T, dial func(ctx context.Context, network, address string) (net.Conn, error)) *wsSession {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &wsSession{result: make(chan joinResult, 1)}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := wsconn.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		tcp, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			ws.Close()
			t.Error(err)
			return
		}
		st, err := tunnel.Join(context.Background(), ws, tcp)
		s.result <- joinResult{st, err}
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	s.client, err = wsconn.Dial(context.Background(), "wss"+strings.TrimPrefix(srv.URL, "https"), nil,
		&wsconn.DialOptions{TLSConfig: clientTLSConfig(pool), NetDialContext: dial})
	if err != nil {
		t.Fatal(err)
	}
	s.sink, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.client.Close(); s.sink.Close() })
	return s
}

func (s *wsSession) wait(t *testing.T) joinResult {
	t.Helper()
	select {
	case r := <-s.result:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Join did not return")
		panic("unreachable")
	}
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("read: %v", err)
		}
		ch <- string(b)
	}()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("read did not end")
		panic("unreachable")
	}
}

type closeWriter interface{ CloseWrite() error }

// TestJoinWebsocketHalfClose checks that a half-close crosses the
// websocket ⇄ TCP join in both directions.
func TestJoinWebsocketHalfClose(t *testing.T) {
	t.Run("client first", func(t *testing.T) {
		s := startWSSession(t)
		s.client.Write([]byte("request"))
		s.client.(closeWriter).CloseWrite()
		if got := readAll(t, s.sink); got != "request" {
			t.Fatalf("sink read %q", got)
		}
		s.sink.Write([]byte("response"))
		s.sink.(closeWriter).CloseWrite()
		if got := readAll(t, s.client); got != "response" {
			t.Fatalf("client read %q", got)
		}
		if r := s.wait(t); r.err != nil || r.stats != (tunnel.Stats{AToB: 7, BToA: 8}) {
			t.Fatalf("Join: %+v, %v", r.stats, r.err)
		}
	})
	t.Run("console first", func(t *testing.T) {
		s := startWSSession(t)
		s.sink.Write([]byte("banner"))
		s.sink.(closeWriter).CloseWrite()
		if got := readAll(t, s.client); got != "banner" {
			t.Fatalf("client read %q", got)
		}
		s.client.Write([]byte("bye"))
		s.client.Close()
		if got := readAll(t, s.sink); got != "bye" {
			t.Fatalf("sink read %q", got)
		}
		if r := s.wait(t); r.err != nil || r.stats != (tunnel.Stats{AToB: 3, BToA: 6}) {
			t.Fatalf("Join: %+v, %v", r.stats, r.err)
		}
	})
	t.Run("client vanishes", func(t *testing.T) {
		var raw net.Conn
		s := startWSSessionDial(t, func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := new(net.Dialer).DialContext(ctx, network, address)
			raw = c
			return c, err
		})
		// A client whose transport ends without a close frame: a real error.
		s.client.Write([]byte("x"))
		io.ReadFull(s.sink, make([]byte, 1))
		raw.Close()
		if r := s.wait(t); r.err == nil {
			t.Fatal("Join returned no error")
		} else if !strings.Contains(r.err.Error(), "without a close frame") {
			t.Fatalf("Join: %v", r.err)
		}
	})
}
