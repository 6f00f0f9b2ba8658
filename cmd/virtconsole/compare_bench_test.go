package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// compareChunk is one throughput op: a 32 KiB binary message (up) or a
// 32 KiB write by the sink (down).
const compareChunk = 32 << 10

// BenchmarkProxyThroughput compares the proxy binary with websockify on
// the same machine, with the same Go client and the same sink:
//
//	client (Go, wsconn) ⇄ [websocket over TLS] ⇄ proxy ⇄ [TCP] ⇄ sink (Go)
//
// up: one op is a 32 KiB message from the client, read by the sink.
// down: one op is a 32 KiB write by the sink, read by the client.
// echo: one op is a 64-byte round trip (the sink echoes); also us-p99.
//
// proxy-cpu-s/GB (up, down) and proxy-cpu-us/op (echo) are the user+system
// CPU time of the proxy's process tree (websockify forks a process per
// connection) per byte carried. Run with "make bench" (no race detector:
// the binary is built without -race then). The websockify variant skips
// when websockify is not installed (Debian: apt-get install websockify).
func BenchmarkProxyThroughput(b *testing.B) {
	sinkL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sinkL.Close()
	dir := pki(b)
	tlsCfg := clientTLS(b, filepath.Join(dir, "ca-cert.pem"))

	proxies := []struct {
		name  string
		start func(b *testing.B) (addr string, pid int)
	}{
		{"virtconsole", func(b *testing.B) (string, int) {
			tokens := writeTokens(b, map[string]resolver.Console{"serial": {Type: "serial", Address: sinkL.Addr().String(), Insecure: true}})
			p := startDaemon(b, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-insecure", "--tokens", tokens, "--max-failures", "1000000",
				"--no-serial-sharing") // the byte pump, as websockify has it: a session per connection
			return p.addr, p.cmd.Process.Pid
		}},
		{"virtconsole-recorded", func(b *testing.B) (string, int) {
			// The same, recording every session (asciicast, --record-input):
			// the recorder's overhead.
			tokens := writeTokens(b, map[string]resolver.Console{"serial": {Type: "serial", Address: sinkL.Addr().String(), Insecure: true}})
			p := startDaemon(b, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-insecure", "--tokens", tokens, "--max-failures", "1000000",
				"--no-serial-sharing", "--record-dir", b.TempDir(), "--record-input")
			return p.addr, p.cmd.Process.Pid
		}},
		{"websockify", func(b *testing.B) (string, int) {
			return startWebsockify(b, dir, sinkL.Addr().String())
		}},
	}
	for _, px := range proxies {
		b.Run(px.name, func(b *testing.B) {
			addr, pid := px.start(b)
			// connect dials through the proxy and accepts the sink's end.
			connect := func(b *testing.B) (client, sink net.Conn) {
				h := http.Header{}
				h.Set("Authorization", "Bearer serial") // ignored by websockify
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				client, err := wsconn.Dial(ctx, "wss://"+addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: tlsCfg, Subprotocols: []string{"binary"}})
				if err != nil {
					b.Fatal(err)
				}
				sinkL.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
				sink, err = sinkL.Accept()
				if err != nil {
					client.Close()
					b.Fatal(err)
				}
				b.Cleanup(func() { client.Close(); sink.Close() })
				// Bounded: a stuck proxy fails the benchmark instead of hanging it.
				deadline := time.Now().Add(5 * time.Minute)
				client.SetDeadline(deadline)
				sink.SetDeadline(deadline)
				return client, sink
			}
			b.Run("up", func(b *testing.B) {
				client, sink := connect(b)
				compareStream(b, pid, client, sink)
			})
			b.Run("down", func(b *testing.B) {
				client, sink := connect(b)
				compareStream(b, pid, sink, client)
			})
			b.Run("echo", func(b *testing.B) {
				client, sink := connect(b)
				compareEcho(b, pid, client, sink)
			})
		})
	}
}

// compareStream writes b.N chunks to w while r reads exactly as many
// bytes (no close: websockify and the proxy end sessions differently),
// and reports the proxy's CPU per GB.
func compareStream(b *testing.B, pid int, w, r net.Conn) {
	want := int64(b.N) * compareChunk
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, compareChunk)
		var n int64
		for n < want {
			m, err := r.Read(buf[:min(int64(len(buf)), want-n)])
			n += int64(m)
			if err != nil {
				got <- fmt.Errorf("read %d of %d bytes: %w", n, want, err)
				return
			}
		}
		got <- nil
	}()
	buf := make([]byte, compareChunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	b.SetBytes(compareChunk)
	cpu0 := treeCPU(b, pid)
	b.ResetTimer()
	for range b.N {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	err := <-got
	b.StopTimer()
	cpu := treeCPU(b, pid) - cpu0
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(cpu.Seconds()/(float64(want)/1e9), "proxy-cpu-s/GB")
}

// compareEcho makes b.N 64-byte round trips: client writes, sink echoes.
func compareEcho(b *testing.B, pid int, client, sink net.Conn) {
	go nettest.Echo(sink)
	msg := make([]byte, 64)
	back := make([]byte, 64)
	times := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(len(msg)))
	cpu0 := treeCPU(b, pid)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, back); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	cpu := treeCPU(b, pid) - cpu0
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)*99/100].Nanoseconds())/1e3, "us-p99")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "proxy-cpu-us/op")
}

// startWebsockify runs websockify with TLS (the proxy's server
// credentials) from 127.0.0.1:PORT to target, in its own process group
// (it forks per connection) killed when the benchmark ends.
func startWebsockify(b *testing.B, dir, target string) (addr string, pid int) {
	path, err := exec.LookPath("websockify")
	if err != nil {
		b.Skip("websockify not installed (Debian: apt-get install websockify); skipping the comparison")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	log := &syncBuffer{}
	cmd := exec.Command(path, "--ssl-only",
		"--cert", filepath.Join(dir, "server-cert.pem"), "--key", filepath.Join(dir, "server-key.pem"),
		addr, target)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its group: it and its per-connection children
		<-done
		if b.Failed() {
			b.Logf("websockify output:\n%s", log.String())
		}
	})
	waitFor(b, 30*time.Second, "websockify to listen", func() bool {
		select {
		case <-done:
			b.Fatalf("websockify exited: %s", log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr, cmd.Process.Pid
}

// treeCPU is the user+system CPU time of pid and its descendants,
// including the reaped children's (cutime, cstime), from /proc.
func treeCPU(b *testing.B, root int) time.Duration {
	const clkTck = 100 // USER_HZ on Linux
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	type proc struct{ ppid, ticks int }
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after "(comm)": state ppid ... utime(14) stime cutime cstime.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 15 {
			continue
		}
		p := proc{}
		p.ppid, _ = strconv.Atoi(f[1])
		for _, s := range f[11:15] {
			v, _ := strconv.Atoi(s)
			p.ticks += v
		}
		procs[pid] = p
	}
	if _, ok := procs[root]; !ok {
		b.Fatal("proxy process gone")
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	ticks := 0
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		ticks += procs[pid].ticks
		todo = append(todo, children[pid]...)
	}
	return time.Duration(ticks) * time.Second / clkTck
}
