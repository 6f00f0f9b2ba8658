package tunnel_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

type countConn struct {
	net.Conn
	mu sync.Mutex
	hist map[int]int
}

func (c *countConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	b := len(p)
	c.hist[b]++
	c.mu.Unlock()
	return c.Conn.Write(p)
}
func (c *countConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func TestZZDebugUp(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	cc := &countConn{hist: map[int]int{}}
	done := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, _ := wsconn.Upgrade(w, r, nil)
		tcp, _ := net.Dial("tcp", l.Addr().String())
		cc.Conn = tcp
		tunnel.Join(context.Background(), ws, cc)
		close(done)
	}))
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	client, _ := wsconn.Dial(context.Background(), "wss"+strings.TrimPrefix(srv.URL, "https"), nil, &wsconn.DialOptions{TLSConfig: clientTLSConfig(pool)})
	sink, _ := l.Accept()
	go func() { buf := make([]byte, 32<<10); for { if _, err := sink.Read(buf); err != nil { sink.Close(); return } } }()
	buf := make([]byte, 32<<10)
	for range 5000 {
		client.Write(buf)
	}
	client.(interface{ CloseWrite() error }).CloseWrite()
	<-done
	tot := 0
	for k, v := range cc.hist { if v > 50 { fmt.Println(k, v) }; tot += v }
	fmt.Println("writes", tot)
}
