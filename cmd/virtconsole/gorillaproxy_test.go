package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/gorilla/websocket"

	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// gorillaProxyEnv makes the test binary the "minimal gorilla proxy" of
// BenchmarkTable (issue 16): websocket → TCP to the address in the
// variable's value, as about sixty lines of Go would do it. With
// gorillaProxyTLSEnv set to a PKI directory, both legs are TLS (the
// server credentials toward the client, the CA toward the sink).
const (
	gorillaProxyEnv    = "VIRTCONSOLE_BENCH_GORILLA"
	gorillaProxyTLSEnv = "VIRTCONSOLE_BENCH_GORILLA_TLS"
)

// gorillaProxyMain is the minimal proxy: upgrade with 4 KiB buffers, dial
// the backend, one goroutine per direction, WriteMessage per backend read
// of up to 32 KiB, NextReader + io.CopyBuffer into the backend (with
// (*net.TCPConn).ReadFrom hidden). It prints its address and serves until
// killed.
func gorillaProxyMain(target string) {
	dir := os.Getenv(gorillaProxyTLSEnv)
	dial := func() (net.Conn, error) { return net.Dial("tcp", target) }
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if dir != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
		ca, err := tlscreds.LoadCAFile(filepath.Join(dir, "ca-cert.pem"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		clientCfg := ca.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1")
		dial = func() (net.Conn, error) { return tls.Dial("tcp", target, clientCfg) }
	}
	up := websocket.Upgrader{ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10, Subprotocols: []string{"binary"},
		CheckOrigin: func(*http.Request) bool { return true }}
	fmt.Printf("gorilla proxy listening on %s\n", l.Addr())
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		backend, err := dial()
		if err != nil {
			return
		}
		defer backend.Close()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := backend.Read(buf)
				if n > 0 && ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
					break
				}
				if err != nil {
					break
				}
			}
			ws.Close()
		}()
		buf := make([]byte, 32<<10)
		for {
			_, r, err := ws.NextReader()
			if err != nil {
				return
			}
			if _, err := io.CopyBuffer(struct{ io.Writer }{backend}, r, buf); err != nil {
				return
			}
		}
	}))
}
