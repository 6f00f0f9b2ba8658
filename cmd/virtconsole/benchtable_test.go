package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Environment of BenchmarkTable (make bench, make bench-json).
const (
	benchJSONEnv   = "VIRTCONSOLE_BENCH_JSON"   // write the raw figures to this file
	benchRoundsEnv = "VIRTCONSOLE_BENCH_ROUNDS" // interleaved rounds (default 3)
	benchMiBEnv    = "VIRTCONSOLE_BENCH_MIB"    // MiB per throughput run (default 512)
	benchIdleEnv   = "VIRTCONSOLE_BENCH_IDLE"   // sessions per idle-memory round (default 1000)
	benchModesEnv  = "VIRTCONSOLE_BENCH_MODES"  // e.g. "tls" (default "plain tls")
	benchPeersEnv  = "VIRTCONSOLE_BENCH_PEERS"  // e.g. "virtconsole gorilla" (default all)
	// Another virtconsole binary (e.g. built from main) measured as the
	// contender "baseline", for a before/after in one interleaved run.
	benchBaselineEnv = "VIRTCONSOLE_BENCH_BASELINE"
	// Directory for virtconsole's profiles (it then runs with
	// --debug-listen): heap (with runtime.MemStats) and goroutine
	// profiles with the idle sessions open,
	// {heap,goroutine}-MODE-idle-{base,loaded}.txt; CPU profiles of each
	// workload, cpu-MODE-{up,down,echo}.pprof; allocations over the run,
	// allocs-MODE.pprof (proxyProfiles, profileCPU). make bench-* set it
	// to bench-profiles/.
	benchProfileEnv = "VIRTCONSOLE_BENCH_PROFILE"
)

// tableFigure is one measured figure of one contender.
type tableFigure struct {
	Mode   string  `json:"mode"`   // plain, tls
	Peer   string  `json:"peer"`   // tcp, gorilla, websockify, virtconsole
	Figure string  `json:"figure"` // see tableRows
	Round  int     `json:"round"`
	Value  float64 `json:"value"`
}

// tableRows are the figures, in the table's order, with their units.
var tableRows = []struct{ key, label string }{
	{"up-MiB/s", "throughput up (MiB/s)"},
	{"down-MiB/s", "throughput down (MiB/s)"},
	{"echo-p50-us", "1-byte echo p50 (µs)"},
	{"echo-p99-us", "1-byte echo p99 (µs)"},
	{"cpu-s/GiB", "proxy CPU per GiB (s)"},
	{"idle-KiB/session", "RSS per idle session (KiB)"},
}

// tablePeers are the contenders, in the table's order.
var tablePeers = []string{"tcp", "gorilla", "websockify", "baseline", "virtconsole"}

// tablePeer is one contender, started for one mode.
type tablePeer struct {
	name  string
	pid   int    // the proxy's process; 0 for raw TCP
	debug string // its --debug-listen address, if any
	dial  func(b *testing.B) net.Conn
}

// BenchmarkTable prints issue 16's table: raw TCP (the ceiling), the
// minimal gorilla proxy (gorillaProxyMain), websockify when installed,
// and the virtconsole proxy binary, each between the same Go client and
// the same Go sink, in rounds that interleave the contenders, plain
// (ws:// and TCP) and with TLS on both legs (wss:// and TLS toward the
// sink; for raw TCP, Go TLS on loopback):
//
//	client (wsconn) ⇄ [ws or wss] ⇄ proxy ⇄ [TCP or TLS] ⇄ sink
//
// Figures: throughput up and down (32 KiB writes), 1-byte echo p50 and
// p99, the proxy process tree's CPU per GiB carried (up and down; in TLS
// mode down only, see below), and
// the growth of its RSS per idle session, each having carried bulk data
// (64 KiB down, and in plain mode 64 KiB up too: openIdle), after 3
// rounds of opening and closing as many sessions (measured once per
// contender and mode, after the rounds). Medians of the rounds are
// printed; $VIRTCONSOLE_BENCH_JSON gets every figure. With
// $VIRTCONSOLE_BENCH_PROFILE set to a directory, virtconsole runs with
// --debug-listen and its heap and goroutine profiles with the idle
// sessions open, CPU profiles of each workload and its allocations are
// saved there (proxyProfiles, profileCPU). Run with -benchtime 1x
// and without the race detector (make bench). It measures only: nothing
// here asserts a timing.
//
// In TLS mode virtconsole has no "up" figure (the table says n/a):
// toward a TLS serial chardev it writes a byte per TLS record at a paste
// rate, for QEMU's sake (package protocols/serial), and no other console
// kind is a plain byte pump up over TLS (a VNC session parses the
// viewer's input; SPICE needs its link handshake). websockify is compared
// in plain mode only: 0.10's --ssl-target stalls toward a Go TLS sink.
func BenchmarkTable(b *testing.B) {
	rounds := envInt(benchRoundsEnv, 3)
	mib := envInt(benchMiBEnv, 512)
	idle := envInt(benchIdleEnv, 1000)
	dir := pki(b)
	var figures []tableFigure
	for _, mode := range benchModes() {
		peers := startTablePeers(b, dir, mode)
		peers.list = selectPeers(peers.list, nil)
		add := func(peer, figure string, round int, v float64) {
			figures = append(figures, tableFigure{Mode: mode, Peer: peer, Figure: figure, Round: round, Value: v})
		}
		for round := 1; round <= rounds; round++ {
			for _, p := range peers.list {
				// Toward a TLS serial chardev virtconsole writes a byte per
				// TLS record at a paste rate (package protocols/serial, for
				// QEMU's sake): not a byte pump, so no "up" in TLS mode,
				// and the CPU figure is the down direction's for everyone.
				var cpu time.Duration
				carried := 0
				if !pasteLimited(mode, p.name, "up-MiB/s") {
					up, cpuUp := tableStream(b, p, peers.sinks, int64(mib)<<20, true)
					add(p.name, "up-MiB/s", round, up)
					if mode == "plain" {
						cpu, carried = cpu+cpuUp, carried+mib
					}
				}
				down, cpuDown := tableStream(b, p, peers.sinks, int64(mib)<<20, false)
				add(p.name, "down-MiB/s", round, down)
				cpu, carried = cpu+cpuDown, carried+mib
				add(p.name, "cpu-s/GiB", round, cpu.Seconds()/float64(carried)*1024)
				p50, p99 := tableEcho(b, p, peers.sinks, 2000)
				add(p.name, "echo-p50-us", round, p50)
				add(p.name, "echo-p99-us", round, p99)
			}
		}
		for _, p := range peers.list {
			if p.pid == 0 {
				continue
			}
			n := idle
			if p.name == "websockify" {
				n = min(n, 50) // a process per session
			}
			add(p.name, "idle-KiB/session", 0, tableIdle(b, p, peers.sinks, n, mode))
			profileCPU(b, p, peers.sinks, mode)
		}
	}
	printTable(os.Stdout, figures)
	if path := os.Getenv(benchJSONEnv); path != "" {
		data, err := json.MarshalIndent(figures, "", "  ")
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// benchModes are the modes to measure: $VIRTCONSOLE_BENCH_MODES, or
// plain and tls.
func benchModes() []string {
	if modes := strings.Fields(os.Getenv(benchModesEnv)); len(modes) > 0 {
		return modes
	}
	return []string{"plain", "tls"}
}

// selectPeers keeps the contenders named in $VIRTCONSOLE_BENCH_PEERS, or
// else those in def (nil: all).
func selectPeers(list []tablePeer, def []string) []tablePeer {
	only := strings.Fields(os.Getenv(benchPeersEnv))
	if len(only) == 0 {
		only = def
	}
	if len(only) == 0 {
		return list
	}
	return slices.DeleteFunc(list, func(p tablePeer) bool { return !slices.Contains(only, p.name) })
}

func envInt(key string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(key)); err == nil && v > 0 {
		return v
	}
	return def
}

// tablePeers is the contenders of one mode and their sink's accepted
// conns, in order.
type tablePeerSet struct {
	list  []tablePeer
	sinks chan net.Conn
}

var gorillaListeningRE = regexp.MustCompile(`gorilla proxy listening on (\S+)`)

// startTablePeers starts a sink and every contender toward it.
func startTablePeers(b *testing.B, dir, mode string) tablePeerSet {
	secure := mode == "tls"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if secure {
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem"))
		if err != nil {
			b.Fatal(err)
		}
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	sinks := make(chan net.Conn, 64) // one session at a time: never full
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if tc, ok := c.(*tls.Conn); ok {
				// Handshake now: a TLS client's Dial waits for it.
				wg.Add(1)
				go func() {
					defer wg.Done()
					tc.SetDeadline(time.Now().Add(30 * time.Second))
					tc.Handshake()
					tc.SetDeadline(time.Time{})
					sinks <- tc
				}()
				continue
			}
			sinks <- c
		}
	}()
	b.Cleanup(func() { l.Close(); wg.Wait() })
	target := l.Addr().String()
	tlsCfg := clientTLS(b, filepath.Join(dir, "ca-cert.pem"))
	scheme := "ws://"
	if secure {
		scheme = "wss://"
	}
	wsDial := func(addr string) func(b *testing.B) net.Conn {
		return func(b *testing.B) net.Conn {
			h := http.Header{}
			h.Set("Authorization", "Bearer bench") // ignored but by virtconsole
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c, err := wsconn.Dial(ctx, scheme+addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: tlsCfg, Subprotocols: []string{"binary"}})
			if err != nil {
				b.Fatal(err)
			}
			return c
		}
	}
	var list []tablePeer
	list = append(list, tablePeer{name: "tcp", dial: func(b *testing.B) net.Conn {
		var c net.Conn
		var err error
		if secure {
			c, err = tls.Dial("tcp", target, tlsCfg)
		} else {
			c, err = net.Dial("tcp", target)
		}
		if err != nil {
			b.Fatal(err)
		}
		return c
	}})

	g := exec.Command(os.Args[0])
	g.Env = append(os.Environ(), gorillaProxyEnv+"="+target)
	if secure {
		g.Env = append(g.Env, gorillaProxyTLSEnv+"="+dir)
	}
	gp := startDaemonCmd(b, g, gorillaListeningRE)
	list = append(list, tablePeer{name: "gorilla", pid: gp.cmd.Process.Pid, dial: wsDial(gp.addr)})

	// websockify 0.10's --ssl-target stalls toward a Go TLS sink (the
	// upload stops after the handshake): it is compared in plain mode only.
	_, err = exec.LookPath("websockify")
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "BenchmarkTable: websockify not installed (Debian: apt-get install websockify); its column stays empty")
	case !secure:
		addr, pid := startWebsockify(b, target)
		list = append(list, tablePeer{name: "websockify", pid: pid, dial: wsDial(addr)})
	}

	tokens := writeTokens(b, map[string]resolver.Console{"bench": {Type: "serial", Address: target, Insecure: !secure}})
	args := []string{"server", "proxy", "--listen", "127.0.0.1:0", "--tokens", tokens, "--max-failures", "1000000",
		"--max-conns-per-client", "0", "--max-sessions", "0",
		"--no-serial-sharing"} // the byte pump, as the others have it: a session per connection
	if secure {
		args = append(args, "--tls-dir", dir, "--connect-tls-dir", dir)
	} else {
		args = append(args, "--listen-insecure", "--connect-insecure")
	}
	debug := ""
	if os.Getenv(benchProfileEnv) != "" {
		debug = freeAddr(b)
		args = append(args, "--debug-listen", debug)
	}
	if bin := os.Getenv(benchBaselineEnv); bin != "" {
		bp := startDaemonCmd(b, exec.Command(bin, slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--debug-listen" || a == debug })...), listeningRE)
		list = append(list, tablePeer{name: "baseline", pid: bp.cmd.Process.Pid, dial: wsDial(bp.addr)})
	}
	vp := startDaemon(b, args...)
	list = append(list, tablePeer{name: "virtconsole", pid: vp.cmd.Process.Pid, dial: wsDial(vp.addr), debug: debug})
	return tablePeerSet{list: list, sinks: sinks}
}

// connectTable opens a session through p and returns both ends.
func connectTable(b *testing.B, p tablePeer, sinks chan net.Conn) (client, sink net.Conn) {
	client = p.dial(b)
	select {
	case sink = <-sinks:
	case <-time.After(30 * time.Second):
		b.Fatalf("%s: the sink got no connection", p.name)
	}
	// Bounded: a stuck proxy fails the benchmark instead of hanging it.
	deadline := time.Now().Add(time.Minute)
	client.SetDeadline(deadline)
	sink.SetDeadline(deadline)
	return client, sink
}

// tableStream sends total bytes up (client to sink) or down, and returns
// MiB/s and the proxy's CPU time.
func tableStream(b *testing.B, p tablePeer, sinks chan net.Conn, total int64, up bool) (float64, time.Duration) {
	client, sink := connectTable(b, p, sinks)
	defer client.Close()
	defer sink.Close()
	// For raw TCP the CPU is this process's: the client's writes and the
	// sink's reads, one loopback hop, which is what a proxy's reads and
	// writes cost at the least (its floor).
	pid := p.pid
	if pid == 0 {
		pid = os.Getpid()
	}
	cpu0 := treeCPU(b, pid)
	start := time.Now()
	streamBytes(b, p.name, client, sink, total, up)
	elapsed := time.Since(start)
	cpu := treeCPU(b, pid) - cpu0
	return float64(total) / (1 << 20) / elapsed.Seconds(), cpu
}

// streamBytes writes total bytes (rounded up to compareChunk) in
// compareChunk writes up (client to sink) or down, and returns once the
// other end has read them all.
func streamBytes(b *testing.B, name string, client, sink net.Conn, total int64, up bool) {
	w, r := client, sink
	if !up {
		w, r = sink, client
	}
	total = (total + compareChunk - 1) / compareChunk * compareChunk
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, compareChunk)
		var n int64
		for n < total {
			m, err := r.Read(buf)
			n += int64(m)
			if err != nil {
				got <- fmt.Errorf("%s: read %d of %d bytes: %w", name, n, total, err)
				return
			}
		}
		got <- nil
	}()
	buf := make([]byte, compareChunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for sent := int64(0); sent < total; sent += compareChunk {
		if _, err := w.Write(buf); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
	}
	if err := <-got; err != nil {
		b.Fatal(err)
	}
}

// tableEcho makes n 1-byte round trips (after a warm-up) and returns the
// median and 99th percentile in µs.
func tableEcho(b *testing.B, p tablePeer, sinks chan net.Conn, n int) (p50, p99 float64) {
	client, sink := connectTable(b, p, sinks)
	defer echoSink(sink)()
	defer client.Close()
	echoRounds(b, p.name, client, 100)
	times := echoRounds(b, p.name, client, n)
	slices.Sort(times)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return us(times[len(times)/2]), us(times[len(times)*99/100])
}

// echoSink echoes what sink reads until it fails; the returned func
// closes sink and waits for the echo to end.
func echoSink(sink net.Conn) (stop func()) {
	done := make(chan struct{})
	go func() { defer close(done); io.Copy(sink, sink) }()
	return func() { sink.Close(); <-done }
}

// echoRounds makes n 1-byte round trips through an echoing sink and
// returns their times.
func echoRounds(b *testing.B, name string, client net.Conn, n int) []time.Duration {
	msg := []byte{'x'}
	back := make([]byte, 1)
	times := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := client.Write(msg); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		if _, err := io.ReadFull(client, back); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		times = append(times, time.Since(start))
	}
	return times
}

// tableIdle measures the growth of p's RSS (its process tree's) per idle
// session: 3 rounds of opening n sessions (each carries bulk data, see
// openIdle, then idles) and closing them, then n open, then n more: the
// second n's growth, divided by n, in KiB.
func tableIdle(b *testing.B, p tablePeer, sinks chan net.Conn, n int, mode string) float64 {
	var held sync.WaitGroup
	open := func() []net.Conn {
		conns := make([]net.Conn, 0, n)
		for range n {
			conns = append(conns, openIdle(b, p, sinks, mode, &held))
		}
		return conns
	}
	for range 3 {
		closeIdle(open(), &held)
	}
	first := open()
	time.Sleep(time.Second) // let the sessions settle (buffers back, stacks idle)
	base := treeRSSKiB(b, p.pid)
	proxyProfiles(b, p, mode+"-idle-base.txt")
	second := open()
	time.Sleep(time.Second)
	loaded := treeRSSKiB(b, p.pid)
	proxyProfiles(b, p, mode+"-idle-loaded.txt")
	closeIdle(append(first, second...), &held)
	return float64(loaded-base) / float64(n)
}

// idleBulk is what each idle session carries before it idles: down (sink
// to client) for every mode, and up too in plain mode. Up is left out
// with TLS on both legs because virtconsole writes toward a TLS serial
// target a byte per record at a paste rate (package protocols/serial):
// down is the direction every contender forwards at full speed.
const idleBulk = 64 << 10

// openIdle opens a session through p that carries idleBulk bytes (see
// there), then idles: a goroutine per end (counted in held) reads until
// its conn fails, as an idle viewer and console do (the client's reads
// answer the proxy's websocket pings); the sink's closes it. The
// deadlines connectTable set are cleared. It returns the client's end.
func openIdle(b *testing.B, p tablePeer, sinks chan net.Conn, mode string, held *sync.WaitGroup) net.Conn {
	client, sink := connectTable(b, p, sinks)
	streamBytes(b, p.name, client, sink, idleBulk, false)
	if mode == "plain" {
		streamBytes(b, p.name, client, sink, idleBulk, true)
	}
	client.SetDeadline(time.Time{})
	sink.SetDeadline(time.Time{})
	held.Add(2)
	drain := func(c net.Conn) {
		defer held.Done()
		var one [1]byte
		for {
			if _, err := c.Read(one[:]); err != nil {
				return
			}
		}
	}
	go drain(client)
	go func() { drain(sink); sink.Close() }()
	return client
}

// closeIdle closes the clients and waits until the proxy closed every
// sink conn: the sessions are over.
func closeIdle(conns []net.Conn, held *sync.WaitGroup) {
	for _, c := range conns {
		c.Close()
	}
	held.Wait()
}

// proxyFigures are what the proxy's debug listener says about its Go
// runtime (zero without one).
type proxyFigures struct {
	heapAlloc, heapInuse, heapSys, stackInuse int64 // bytes
	goroutines                                int
}

var memStatRE = regexp.MustCompile(`# (HeapAlloc|HeapInuse|HeapSys|Stack) = (\d+)`)

// proxyProfiles saves p's heap profile (after a forced GC, with its
// runtime.MemStats) and goroutine profile as {heap,goroutine}-name in
// $VIRTCONSOLE_BENCH_PROFILE, and returns their figures, when p has a
// debug address.
func proxyProfiles(b *testing.B, p tablePeer, name string) proxyFigures {
	var f proxyFigures
	dir := os.Getenv(benchProfileEnv)
	if p.debug == "" || dir == "" {
		return f
	}
	for _, profile := range []string{"heap?debug=1&gc=1", "goroutine?debug=1"} {
		kind, _, _ := strings.Cut(profile, "?")
		data := saveProfile(b, p, profile, filepath.Join(dir, kind+"-"+name))
		for _, m := range memStatRE.FindAllSubmatch(data, -1) {
			v, _ := strconv.ParseInt(string(m[2]), 10, 64)
			switch string(m[1]) {
			case "HeapAlloc":
				f.heapAlloc = v
			case "HeapInuse":
				f.heapInuse = v
			case "HeapSys":
				f.heapSys = v
			case "Stack":
				f.stackInuse = v
			}
		}
		if m := goroutineTotalRE.FindSubmatch(data); m != nil {
			f.goroutines, _ = strconv.Atoi(string(m[1]))
		}
	}
	return f
}

// saveProfile gets /debug/pprof/profile from p's debug listener and
// saves it as path; it returns the profile.
func saveProfile(b *testing.B, p tablePeer, profile, path string) []byte {
	data, err := getProfile(p, profile, path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// getProfile is saveProfile for any goroutine.
func getProfile(p tablePeer, profile, path string) ([]byte, error) {
	resp, err := http.Get("http://" + p.debug + "/debug/pprof/" + profile)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /debug/pprof/%s: %d %v", profile, resp.StatusCode, err)
	}
	return data, os.WriteFile(path, data, 0o644)
}

// benchCPUSeconds is how long each of virtconsole's CPU profiles lasts.
const benchCPUSeconds = 4

// profileCPU saves p's CPU profile over each workload of
// BenchmarkSyscalls (up, down, echo; run for benchCPUSeconds each) as
// cpu-MODE-WORKLOAD.pprof, and then its allocation profile (every
// allocation since it started: the table's whole run) as
// allocs-MODE.pprof, in $VIRTCONSOLE_BENCH_PROFILE, when p has a debug
// address. Read them with go tool pprof -top.
func profileCPU(b *testing.B, p tablePeer, sinks chan net.Conn, mode string) {
	dir := os.Getenv(benchProfileEnv)
	if p.debug == "" || dir == "" {
		return
	}
	for _, workload := range []string{"up", "down", "echo"} {
		if pasteLimited(mode, p.name, workload+"-MiB/s") {
			continue
		}
		run, end := workloadSession(b, p, sinks, workload)
		done := make(chan error, 1)
		go func() {
			_, err := getProfile(p, fmt.Sprintf("profile?seconds=%d", benchCPUSeconds), filepath.Join(dir, "cpu-"+mode+"-"+workload+".pprof"))
			done <- err
		}()
		var err error
		for busy := true; busy; {
			run(200)
			select {
			case err = <-done:
				busy = false
			default:
			}
		}
		end()
		if err != nil {
			b.Fatal(err)
		}
	}
	saveProfile(b, p, "allocs", filepath.Join(dir, "allocs-"+mode+".pprof"))
}

var goroutineTotalRE = regexp.MustCompile(`goroutine profile: total (\d+)`)

// freeAddr is a loopback address with a port free at the moment.
func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// treeRSSKiB is the resident set size of pid and its descendants.
func treeRSSKiB(b *testing.B, root int) int {
	total := 0
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		total += rssKiB(b, pid)
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(data)) {
			if c, err := strconv.Atoi(f); err == nil {
				todo = append(todo, c)
			}
		}
	}
	return total
}

// printTable prints the medians of figures, a table per mode, with
// virtconsole's ratios to raw TCP and to the minimal gorilla proxy.
func printTable(w io.Writer, figures []tableFigure) {
	median := func(mode, peer, figure string) (float64, bool) {
		var v []float64
		for _, f := range figures {
			if f.Mode == mode && f.Peer == peer && f.Figure == figure {
				v = append(v, f.Value)
			}
		}
		if len(v) == 0 {
			return 0, false
		}
		slices.Sort(v)
		return v[len(v)/2], true
	}
	for _, mode := range []string{"plain", "tls"} {
		fmt.Fprintf(w, "\n%s (medians)\n", map[string]string{"plain": "plain: ws to the proxy, TCP to the sink", "tls": "TLS on both legs: wss to the proxy, TLS to the sink"}[mode])
		fmt.Fprintf(w, "%-28s %12s %12s %12s %12s %12s %10s %10s\n", "figure", "raw TCP", "gorilla", "websockify", "baseline", "virtconsole", "vc/raw", "vc/gorilla")
		for _, row := range tableRows {
			fmt.Fprintf(w, "%-28s", row.label)
			for _, peer := range tablePeers {
				if _, ran := median(mode, peer, "down-MiB/s"); ran && pasteLimited(mode, peer, row.key) {
					fmt.Fprintf(w, " %12s", "n/a*")
				} else if v, ok := median(mode, peer, row.key); ok {
					fmt.Fprintf(w, " %12.1f", v)
				} else {
					fmt.Fprintf(w, " %12s", "–")
				}
			}
			vc, ok := median(mode, "virtconsole", row.key)
			for _, peer := range []string{"tcp", "gorilla"} {
				if v, ok2 := median(mode, peer, row.key); ok && ok2 && v != 0 {
					fmt.Fprintf(w, " %9.2f×", vc/v)
				} else {
					fmt.Fprintf(w, " %10s", "–")
				}
			}
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, "raw TCP's CPU per GiB is the client's and the sink's: one loopback hop, a proxy's floor (it reads and writes every byte once)")
		if mode == "tls" {
			fmt.Fprintln(w, "* n/a: paste-limited toward a TLS serial target (a byte per TLS record, 256 KiB/s; package protocols/serial)")
		}
	}
}

// pasteLimited says whether a figure is not measured because
// virtconsole writes toward a TLS serial target at a paste rate.
func pasteLimited(mode, peer, figure string) bool {
	return mode == "tls" && figure == "up-MiB/s" && (peer == "virtconsole" || peer == "baseline")
}
