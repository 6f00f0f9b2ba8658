package main

import (
	"context"
	"net/http"
	"path/filepath"
	"sort"
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
	p := startDaemon(b, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens, "--max-failures", "1000000")
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
