package main

import (
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchIdleSessionsEnv sizes BenchmarkIdleSessions (default 10000).
const benchIdleSessionsEnv = "VIRTCONSOLE_BENCH_IDLE_SESSIONS"

// idleFileSlack is the open files a proxy (and this test) needs besides
// two per session: listeners, the debug listener's conns, logs.
const idleFileSlack = 200

// BenchmarkIdleSessions (make bench-idle) measures issue 16's "memory for
// 10,000 idle consoles": through the virtconsole server proxy binary,
// plain and with TLS on both legs (BenchmarkTable's setup: startTablePeers),
// it opens $VIRTCONSOLE_BENCH_IDLE_SESSIONS (10,000) sessions one after
// another, each carrying bulk data first (openIdle: 64 KiB down, and up
// too in plain mode) and then idling with a reader at both ends, and
// prints the proxy's growth in RSS, Go heap (live, after a forced GC),
// goroutines and open files, in total and per session, and what is left
// once they are closed. Before, 100 sessions open and close, so that the
// base includes what the first sessions initialise once.
//
// The heap and goroutine profiles (base, loaded, after) go to
// $VIRTCONSOLE_BENCH_PROFILE as {heap,goroutine}-MODE-sessions-*.txt
// (make bench-idle: bench-profiles/). $VIRTCONSOLE_BENCH_PEERS adds the
// gorilla proxy (RSS only; it has no debug listener). Every session comes
// from 127.0.0.1: the proxy runs with no session or connection bound per
// client (--max-sessions 0, --max-conns-per-client 0). Each session takes
// two files in the proxy and two here, more than the usual limit of
// open files: the benchmark raises its own limit, which the proxy
// inherits, the hard one too when it may (CAP_SYS_RESOURCE); where the
// hard limit stays below what n sessions need, it opens as many as fit
// and says so. It measures only.
func BenchmarkIdleSessions(b *testing.B) {
	n := envInt(benchIdleSessionsEnv, 10000)
	if limit := raiseFileLimit(b, uint64(2*n+idleFileSlack)); limit < uint64(2*n+idleFileSlack) {
		n = (int(limit) - idleFileSlack) / 2
		fmt.Printf("BenchmarkIdleSessions: %d sessions, as many as the limit on open files (%d; raising it takes CAP_SYS_RESOURCE: ulimit -Hn) allows at two files per session\n", n, limit)
	}
	if os.Getenv(benchProfileEnv) == "" {
		b.Setenv(benchProfileEnv, b.TempDir())
	}
	dir := pki(b)
	for _, mode := range benchModes() {
		peers := startTablePeers(b, dir, mode)
		for _, p := range selectPeers(peers.list, []string{"virtconsole"}) {
			if p.pid == 0 || p.name == "websockify" { // a process per session
				continue
			}
			idleSessions(b, p, peers.sinks, n, mode)
		}
	}
	fmt.Printf("profiles in %s\n", os.Getenv(benchProfileEnv))
}

// idleFigures are one measurement of a proxy process.
type idleFigures struct {
	rssKiB, fds int
	rt          proxyFigures // from the debug listener, when it has one
}

func measureIdle(b *testing.B, p tablePeer, name string) idleFigures {
	f := idleFigures{rssKiB: treeRSSKiB(b, p.pid)}
	if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.pid)); err == nil {
		f.fds = len(ents)
	}
	f.rt = proxyProfiles(b, p, name)
	return f
}

// idleSessions opens n idle sessions through p, measures, closes them and
// prints the figures.
func idleSessions(b *testing.B, p tablePeer, sinks chan net.Conn, n int, mode string) {
	var held sync.WaitGroup
	warm := make([]net.Conn, 0, 100)
	for range cap(warm) {
		warm = append(warm, openIdle(b, p, sinks, mode, &held))
	}
	closeIdle(warm, &held)
	time.Sleep(time.Second)
	base := measureIdle(b, p, mode+"-sessions-base.txt")
	start := time.Now()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		conns = append(conns, openIdle(b, p, sinks, mode, &held))
		if (i+1)%2000 == 0 {
			fmt.Fprintf(os.Stderr, "BenchmarkIdleSessions: %s %s: %d sessions open after %.0f s\n", p.name, mode, i+1, time.Since(start).Seconds())
		}
	}
	opened := time.Since(start)
	time.Sleep(2 * time.Second) // let the sessions settle (buffers back, stacks idle)
	loaded := measureIdle(b, p, mode+"-sessions-loaded.txt")
	closeIdle(conns, &held)
	time.Sleep(2 * time.Second)
	after := measureIdle(b, p, mode+"-sessions-after.txt")

	carried := "64 KiB down"
	if mode == "plain" {
		carried += " and 64 KiB up"
	}
	fmt.Printf("\n%s, %s: %d idle sessions, each having carried %s, opened in %.1f s\n", p.name, mode, n, carried, opened.Seconds())
	fmt.Printf("  %-22s %12s %12s %12s %14s %12s\n", "", "base", "loaded", "growth", "per session", "after close")
	row := func(label, unit string, base, loaded, after float64) {
		fmt.Printf("  %-22s %12.1f %12.1f %12.1f %14.2f %12.1f  (%s)\n", label, base, loaded, loaded-base, (loaded-base)/float64(n), after, unit)
	}
	kib := func(v int64) float64 { return float64(v) / 1024 }
	row("RSS", "KiB", float64(base.rssKiB), float64(loaded.rssKiB), float64(after.rssKiB))
	if p.debug != "" {
		row("Go heap, live", "KiB", kib(base.rt.heapAlloc), kib(loaded.rt.heapAlloc), kib(after.rt.heapAlloc))
		row("Go heap, in use spans", "KiB", kib(base.rt.heapInuse), kib(loaded.rt.heapInuse), kib(after.rt.heapInuse))
		row("goroutine stacks", "KiB", kib(base.rt.stackInuse), kib(loaded.rt.stackInuse), kib(after.rt.stackInuse))
		row("goroutines", "count", float64(base.rt.goroutines), float64(loaded.rt.goroutines), float64(after.rt.goroutines))
	}
	row("open files", "count", float64(base.fds), float64(loaded.fds), float64(after.fds))
	b.ReportMetric(float64(loaded.rssKiB-base.rssKiB)/float64(n), p.name+"-"+mode+"-KiB/session")
}

// raiseFileLimit raises the limit on open files of this process, and so
// of the proxies it starts, to want if it can (the hard limit too, which
// takes CAP_SYS_RESOURCE), or else the soft limit to the hard one, and
// returns the limit it set.
func raiseFileLimit(b *testing.B, want uint64) uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	if l.Cur >= want {
		return l.Cur
	}
	if l.Max < want {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err == nil {
			return want
		}
	}
	l.Cur = min(l.Max, want)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		b.Fatal(err)
	}
	return l.Cur
}
