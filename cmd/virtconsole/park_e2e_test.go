package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// The daemon parks idle sessions: once their consoles (plain TCP) have
// been quiet for proxy.ParkIdle, each session holds one goroutine
// instead of two (go_goroutines, from its metrics), and every session
// still carries bytes both ways at once, bulk too; closing them gives
// the goroutines back.
func TestIdleSessionsPark(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var consoles sync.WaitGroup
	defer consoles.Wait()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			consoles.Add(1)
			go func() { defer consoles.Done(); nettest.Echo(c); c.Close() }()
		}
	}()
	tokens := writeTokens(t, map[string]resolver.Console{"park": {Type: "serial", Address: l.Addr().String(), Insecure: true}})
	d := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--listen-insecure", "--connect-insecure",
		"--tokens", tokens, "--no-serial-sharing", "--metrics-listen", "127.0.0.1:0")
	maddr := metricsAddr(t, d)
	goroutines := func() int { return int(scrape(t, maddr).value(t, "go_goroutines")) }
	base := goroutines()

	const n = 20
	h := http.Header{}
	h.Set("Authorization", "Bearer park")
	conns := make([]net.Conn, n)
	for i := range conns {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := wsconn.Dial(ctx, "ws://"+d.addr+"/websockify", h, &wsconn.DialOptions{Subprotocols: []string{"binary"}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	echoAll := func(msg string) {
		t.Helper()
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Errorf("session %d: %v", i, err)
					return
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Errorf("session %d: echo %d bytes, %v; want %d", i, len(got), err, len(msg))
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	parked := func() {
		t.Helper()
		waitFor(t, proxy.ParkIdle+20*time.Second, "idle sessions to hold one goroutine each", func() bool {
			return goroutines()-base <= n+2
		})
	}
	echoAll("hello")
	parked()
	echoAll(strings.Repeat("bulk", 30000)) // wakes them: both ways, 120 KB each
	parked()
	echoAll("again")
	for _, c := range conns {
		c.Close()
	}
	waitFor(t, 20*time.Second, "the sessions' goroutines to end", func() bool { return goroutines() <= base+2 })
}
