package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// BenchmarkVNCSessionSetup measures what a viewer waits for: from
// opening the websocket (TLS) to the proxy until RFB ServerInit, with the
// proxy resolving the token, dialling QEMU and negotiating VeNCrypt x509
// with client certificates. Run with "make bench" (no race detector).
func BenchmarkVNCSessionSetup(b *testing.B) {
	qemutest.Require(b)
	dir := pki(b)
	_, addr := qemutest.StartVNC(b, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(b, map[string]resolver.Console{"bench": {Type: "vnc", Address: addr}})
	p := startDaemon(b, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens, "--max-failures", "1000000", "--max-conns-per-client", "0")
	tlsCfg := clientTLS(b, filepath.Join(dir, "ca-cert.pem"))
	h := http.Header{}
	h.Set("Authorization", "Bearer bench")
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := wsconn.Dial(ctx, "wss://"+p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: tlsCfg, Subprotocols: []string{"binary"}})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if name, _, _, reason := rfbHandshake(b, c); name != "QEMU" {
			b.Fatalf("ServerInit name %q, reason %q", name, reason)
		}
		times = append(times, time.Since(start))
		c.Close()
	}
	b.StopTimer()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)*9/10].Microseconds())/1000, "ms-p90")
}

// BenchmarkIdleSessionMemory measures what an idle session costs the
// proxy process: after several open/close rounds (untouched buffers would
// hide the cost), the growth of its resident memory when N more idle
// sessions open, each having carried 64 KiB both ways, divided by N. The console is an echo server standing in for a chardev; the
// viewer leg is TLS. Reported as KiB/session.
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 200
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	dir := pki(b)
	tokens := writeTokens(b, map[string]resolver.Console{"mem": {Type: "serial", Address: echo.Addr().String(), Insecure: true}})
	p := startDaemon(b, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-insecure", "--tokens", tokens, "--max-failures", "1000000", "--max-conns-per-client", "0",
		"--no-serial-sharing") // many sessions to one echo console, each its own
	tlsCfg := clientTLS(b, filepath.Join(dir, "ca-cert.pem"))
	h := http.Header{}
	h.Set("Authorization", "Bearer mem")
	payload := make([]byte, 64<<10)
	open := func() []net.Conn {
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			c, err := wsconn.Dial(ctx, "wss://"+p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: tlsCfg})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			go c.Write(payload)
			if _, err := io.ReadFull(c, make([]byte, len(payload))); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		return conns
	}
	closeAll := func(conns []net.Conn) {
		for _, c := range conns {
			c.Close()
		}
		waitFor(b, 30*time.Second, "sessions to end", func() bool {
			return strings.Count(p.log.String(), "session end") >= strings.Count(p.log.String(), "session start")
		})
	}
	for i := 0; i < b.N; i++ {
		for round := 0; round < 3; round++ {
			closeAll(open())
		}
		// With n sessions open (memory the rounds freed is reused by
		// them), n more must bring their own: that growth is the cost.
		first := open()
		base := rssKiB(b, p.cmd.Process.Pid)
		second := open()
		loaded := rssKiB(b, p.cmd.Process.Pid)
		closeAll(append(first, second...))
		b.ReportMetric(float64(loaded-base)/n, "KiB/session")
	}
}

// rssKiB reads a process's resident set size.
func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
