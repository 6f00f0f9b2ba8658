package tunnel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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

// chunk is the size of one benchmark operation's write: what a busy
// Join writes at a time.
const chunk = 32 << 10

// BenchmarkJoinTCP measures Join between two loopback TCP connections:
//
//	client ⇄ [TCP] ⇄ Join ⇄ [TCP] ⇄ sink
//
// stream: one op is a 32 KiB write by the client, read by the sink.
// echo: one op is a 64-byte round trip through Join and an echoing sink.
func BenchmarkJoinTCP(b *testing.B) {
	b.Run("stream", func(b *testing.B) {
		client, sink := joinTCP(b)
		benchStream(b, client, sink)
	})
	b.Run("echo", func(b *testing.B) {
		client, sink := joinTCP(b)
		benchEcho(b, client, sink)
	})
	// As the proxy runs it: WithCounters, which must cost no allocation.
	b.Run("counted/stream", func(b *testing.B) {
		client, sink := joinTCP(b, tunnel.WithCounters(new(atomic.Int64), new(atomic.Int64)))
		benchStream(b, client, sink)
	})
	b.Run("counted/echo", func(b *testing.B) {
		client, sink := joinTCP(b, tunnel.WithCounters(new(atomic.Int64), new(atomic.Int64)))
		benchEcho(b, client, sink)
	})
}

// BenchmarkJoinTLSWebsocket measures the proxy's data path:
//
//	client ⇄ [websocket over TLS] ⇄ Join ⇄ [TCP] ⇄ sink
//
// up: one op is a 32 KiB message from the client, read by the sink.
// down: one op is a 32 KiB write by the sink, read by the client.
// echo: one op is a 64-byte round trip.
//
// The tls-console variants put TLS on the sink's leg too, as toward QEMU
// by default: client ⇄ [websocket over TLS] ⇄ Join ⇄ [TLS] ⇄ sink.
func BenchmarkJoinTLSWebsocket(b *testing.B) {
	for _, sinkTLS := range []bool{false, true} {
		prefix := ""
		if sinkTLS {
			prefix = "tls-console/"
		}
		b.Run(prefix+"up", func(b *testing.B) {
			client, sink := joinTLSWebsocket(b, sinkTLS)
			benchStream(b, client, sink)
		})
		b.Run(prefix+"down", func(b *testing.B) {
			client, sink := joinTLSWebsocket(b, sinkTLS)
			benchStream(b, sink, client)
		})
		b.Run(prefix+"echo", func(b *testing.B) {
			client, sink := joinTLSWebsocket(b, sinkTLS)
			benchEcho(b, client, sink)
		})
	}
}

// benchStream writes b.N chunks to w and waits until r has read them all
// and EOF.
func benchStream(b *testing.B, w, r net.Conn) {
	type result struct {
		n   int64
		err error
	}
	got := make(chan result, 1)
	go func() {
		buf := make([]byte, chunk)
		var n int64
		for {
			m, err := r.Read(buf)
			n += int64(m)
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = nil
				}
				got <- result{n, err}
				return
			}
		}
	}()
	buf := make([]byte, chunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	w.(interface{ CloseWrite() error }).CloseWrite()
	res := <-got
	b.StopTimer()
	if res.err != nil {
		b.Fatal(res.err)
	}
	if want := int64(b.N) * chunk; res.n != want {
		b.Fatalf("read %d bytes, want %d", res.n, want)
	}
}

// benchEcho makes b.N 64-byte round trips: client writes, sink echoes.
func benchEcho(b *testing.B, client, sink net.Conn) {
	go nettest.Echo(sink)
	msg := make([]byte, 64)
	back := make([]byte, 64)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, back); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
}

// joinTCP returns the outer ends of client ⇄ Join ⇄ sink over TCP.
func joinTCP(b *testing.B, opts ...tunnel.JoinOption) (client, sink net.Conn) {
	client, ja := nettest.TCPPair(b)
	jb, sink := nettest.TCPPair(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tunnel.Join(context.Background(), ja, jb, opts...)
	}()
	b.Cleanup(func() {
		client.Close()
		sink.Close()
		<-done
	})
	return client, sink
}

// joinTLSWebsocket starts a TLS websocket server that joins every
// websocket to a new connection to a sink (TCP, or TLS if sinkTLS), and
// returns the client's websocket and the sink's end.
func joinTLSWebsocket(b *testing.B, sinkTLS bool) (client, sink net.Conn) {
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var sinkL net.Listener = l
	dialSink := func(ctx context.Context) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, "tcp", l.Addr().String())
	}
	if sinkTLS {
		sinkL = tls.NewListener(l, &tls.Config{Certificates: srv.TLS.Certificates})
		dialSink = func(ctx context.Context) (net.Conn, error) {
			return tunnel.DialTLS(ctx, nil, l.Addr().String(), clientTLSConfig(pool))
		}
	}

	sessions := make(chan struct{}, 1)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { sessions <- struct{}{} }()
		ws, err := wsconn.Upgrade(w, r, nil)
		if err != nil {
			b.Error(err)
			return
		}
		console, err := dialSink(r.Context())
		if err != nil {
			ws.Close()
			b.Error(err)
			return
		}
		tunnel.Join(context.Background(), ws, console)
	})
	client, err = wsconn.Dial(context.Background(), "wss"+strings.TrimPrefix(srv.URL, "https"), nil,
		&wsconn.DialOptions{TLSConfig: clientTLSConfig(pool), Subprotocols: []string{"binary"}})
	if err != nil {
		b.Fatal(err)
	}
	sink, err = sinkL.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		client.Close()
		sink.Close()
		<-sessions
		srv.Close()
	})
	return client, sink
}
