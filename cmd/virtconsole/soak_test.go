package main

// TestSoak: the proxy binary under sustained load with faults, reporting
// figures. "make test" runs it briefly (a few hundred sessions for about
// 20 s, under the race detector); "make soak" runs it for SOAK_MINUTES
// (default 3) holding SOAK_SESSIONS (default 10000) sessions, without the
// race detector. Everything runs on loopback and stops by itself.
//
// What runs: proxy A ("server proxy", static token file, TLS on both
// legs) in front of echo consoles (TLS chardev stand-ins that answer each
// byte) and a real QEMU's VNC console; proxy B ("server proxy") in front
// of the REST resolver daemon ("server resolver"), and the bundled server
// ("server"), both resolving a libvirt domain's VNC console from the
// test libvirtd.
//
// What it does meanwhile:
//   - held sessions, spread over 127.0.1.x source addresses (each address
//     within --max-conns-per-client's default), each sending
//     sequence-numbered frames distinct to the session and checking each
//     echo: any byte lost, reordered, corrupted or crossed into another
//     session is counted;
//   - churn: sessions opened, used once and closed, as fast as they go;
//   - probes: a VNC session to ServerInit through each proxy twice a
//     second;
//   - faults: QEMU killed and started again (its new port written to the
//     token file, which the proxy reloads), the REST resolver killed and
//     started again on its port, libvirtd restarted;
//   - a crowd from 127.0.0.2: slowloris clients (headers never finished)
//     and idle keep-alive clients, three times --max-conns-per-client;
//   - a flood of refused tokens from 127.0.0.3, and a valid token from
//     the same address meanwhile.
//
// Afterwards proxy A's file descriptors, goroutines and heap (after a
// forced GC, from --debug-listen) must be back near the baseline taken
// before the load.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// soakConfig is the size of a soak run.
type soakConfig struct {
	duration time.Duration
	held     int           // sessions held open, carrying checked frames
	heldNote string        // why held is less than asked for
	interval time.Duration // between one held session's frames
	churners int           // goroutines opening and closing sessions
	crowd    int           // slowloris and idle connections from 127.0.0.2
}

func soakConfigFromEnv(t *testing.T) soakConfig {
	c := soakConfig{duration: 20 * time.Second, held: 200, interval: 100 * time.Millisecond, churners: 2, crowd: 300}
	if m := os.Getenv("SOAK_MINUTES"); m != "" {
		f, err := strconv.ParseFloat(m, 64)
		if err != nil || f <= 0 {
			t.Fatalf("SOAK_MINUTES=%q: want a positive number of minutes", m)
		}
		c.duration = time.Duration(f * float64(time.Minute))
		// A frame every 5 s a session: 2,000 a second through 10,000
		// sessions, which two cores carry with room for the faults.
		c.held, c.interval, c.churners = 10000, 5*time.Second, 4
	}
	// The proxy holds two connections a session (and a few hundred
	// besides); the hard limit on open files bounds it: 20,000 on a
	// machine whose root lacks CAP_SYS_RESOURCE.
	fit := (fileLimit(t) - 600) / 2
	if s := os.Getenv("SOAK_SESSIONS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("SOAK_SESSIONS=%q: want a positive number", s)
		}
		if n > fit {
			t.Fatalf("SOAK_SESSIONS=%d: the open-file limit (ulimit -Hn: %d) lets the proxy hold at most %d sessions; raise it or ask for fewer", n, fileLimit(t), fit)
		}
		c.held = n
	} else if c.held > fit {
		c.heldNote = fmt.Sprintf(" (asked %d; the open-file limit of %d allows %d)", c.held, fileLimit(t), fit)
		c.held = fit
	}
	return c
}

// Each held session's frames: a header (magic, session, sequence) and a
// payload that depends on both, so that a byte from another session or
// another frame is told apart from a lost or corrupted one.
const (
	frameMagic  = 0x76637361 // "vcsa"
	frameHeader = 16
	frameLen    = 512
)

func fillFrame(b []byte, session uint32, seq uint64) {
	binary.BigEndian.PutUint32(b[0:], frameMagic)
	binary.BigEndian.PutUint32(b[4:], session)
	binary.BigEndian.PutUint64(b[8:], seq)
	x := uint32(seq)*2654435761 ^ session*40503
	for i := frameHeader; i < len(b); i++ {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
}

// frameFault classifies an echoed frame against the expected one.
type frameFault int

const (
	frameOK frameFault = iota
	frameCrossed
	frameOutOfOrder
	frameCorrupt
)

func checkFrame(got, want []byte, session uint32, seq uint64) frameFault {
	if string(got) == string(want) {
		return frameOK
	}
	if binary.BigEndian.Uint32(got[0:]) != frameMagic {
		return frameCorrupt
	}
	if binary.BigEndian.Uint32(got[4:]) != session {
		return frameCrossed
	}
	if binary.BigEndian.Uint64(got[8:]) != seq {
		return frameOutOfOrder
	}
	return frameCorrupt
}

// soakStats are the run's counters.
type soakStats struct {
	heldOpen, heldPeak           atomic.Int64
	heldFailed                   atomic.Int64
	framesChecked, bytesChecked  atomic.Int64
	crossed, outOfOrder, corrupt atomic.Int64
	churnOpened, churnFailed     atomic.Int64
	floodRefused, floodAccepted  atomic.Int64
	floodOther                   atomic.Int64
	crowdTried, crowdCut         atomic.Int64
	crowdRefused                 atomic.Int64
	validBesideFlood             atomic.Int64
	validBesideFloodFailed       atomic.Int64

	setup, echo latencies // churn sessions' setup; held sessions' frame round trips

	mu     sync.Mutex
	errors []string // the first few unexpected errors
}

// latencies is a histogram of durations in power-of-two millisecond
// buckets, counted with atomics from every session's goroutine.
type latencies struct{ buckets [20]atomic.Int64 }

func (l *latencies) add(d time.Duration) {
	i := 0
	for ms := d.Milliseconds(); ms > 0 && i < len(l.buckets)-1; ms >>= 1 {
		i++
	}
	l.buckets[i].Add(1)
}

// quantile is the upper bound of the bucket holding quantile q.
func (l *latencies) quantile(q float64) time.Duration {
	var total int64
	for i := range l.buckets {
		total += l.buckets[i].Load()
	}
	var seen int64
	for i := range l.buckets {
		if seen += l.buckets[i].Load(); float64(seen) >= q*float64(total) {
			return time.Duration(1<<i) * time.Millisecond
		}
	}
	return 0
}

func (l *latencies) String() string {
	return fmt.Sprintf("p50 < %v, p99 < %v", l.quantile(0.5), l.quantile(0.99))
}

func (s *soakStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errors) < 10 {
		s.errors = append(s.errors, fmt.Sprintf(format, args...))
	}
}

// soakBed is what the soak runs against.
type soakBed struct {
	t          *testing.T
	pkiDir     string
	tlsCfg     *tls.Config
	tokensFile string
	tokens     map[string]resolver.Console
	proxyA     *daemon
	debugA     string
}

var debugListeningRE = regexp.MustCompile(`debug listening" address=http://(\S+)/debug/pprof/`)

func TestSoak(t *testing.T) {
	qemutest.Require(t)
	cfg := soakConfigFromEnv(t)
	d := libvirttest.Start(t)

	b := &soakBed{t: t, pkiDir: pki(t)}
	b.tlsCfg = clientTLS(t, filepath.Join(b.pkiDir, "ca-cert.pem"))
	plainEcho, tlsEcho := startEchoConsoles(t, b.pkiDir)

	// Tokens: one per 50 held sessions (within the per-token share).
	b.tokens = map[string]resolver.Console{}
	var bulkTokens []string
	for i := 0; i <= cfg.held/50; i++ {
		tok := randomToken(t)
		bulkTokens = append(bulkTokens, tok)
		// One token in ten reaches its echo console over TLS (one record
		// per byte toward it, as toward a QEMU TLS chardev).
		if i%10 == 9 {
			b.tokens[tok] = resolver.Console{Type: "serial", Address: tlsEcho}
		} else {
			b.tokens[tok] = resolver.Console{Type: "serial", Address: plainEcho, Insecure: true}
		}
	}
	qemuToken := randomToken(t)
	q, qaddr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: b.pkiDir, VerifyPeer: true})
	b.tokens[qemuToken] = resolver.Console{Type: "vnc", Address: qaddr}
	b.tokensFile = writeTokens(t, b.tokens)
	b.proxyA = startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", b.pkiDir,
		"--connect-tls-dir", b.pkiDir, "--connect-insecure", "--tokens", b.tokensFile,
		"--max-sessions", "0", "--debug-listen", "127.0.0.1:0",
		"--no-serial-sharing") // the echo consoles serve each session on its own
	waitFor(t, 10*time.Second, "proxy A's debug listener", func() bool {
		m := debugListeningRE.FindStringSubmatch(b.proxyA.log.String())
		if m != nil {
			b.debugA = m[1]
		}
		return m != nil
	})

	// The libvirt side: a domain with VNC (TLS, client certificates), the
	// REST resolver daemon and proxy B in front of it, and the bundled
	// server.
	dom := d.NewDomain(t, libvirttest.DomainOptions{VNC: true, NoPTY: true})
	if r := run(t, nil, "enable", dom.Name); r.code != 0 {
		t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
	}
	t.Cleanup(func() { runCleanup("disable", dom.Name) })
	libvirtToken := tokenOf(t, dom.Name, "vnc")
	resolverPort := qemutest.FreePort(t)
	resolverArgs := []string{"server", "resolver", "--listen", fmt.Sprintf("127.0.0.1:%d", resolverPort),
		"--tls-dir", b.pkiDir, "--connect", libvirttest.TLSURI}
	restResolver := startDaemon(t, resolverArgs...)
	proxyB := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", b.pkiDir,
		"--connect-tls-dir", libvirttest.TLSDir, "--resolver-tls-dir", b.pkiDir,
		"--resolver", fmt.Sprintf("https://127.0.0.1:%d/consoleresolver/", resolverPort))
	bundled := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", b.pkiDir,
		"--connect-tls-dir", libvirttest.TLSDir, "--connect", libvirttest.URI, "--single-use=false")

	// Every path works before the load; the baseline follows a warm-up
	// round of sessions (buffers and pools the load would grow anyway).
	b.vncProbe(b.proxyA.addr, qemuToken, 30*time.Second)
	b.vncProbe(proxyB.addr, libvirtToken, 30*time.Second)
	b.vncProbe(bundled.addr, libvirtToken, 30*time.Second)
	warm := make([]net.Conn, 0, 50)
	for i := range 50 {
		c, err := b.open(b.proxyA.addr, bulkTokens[i%len(bulkTokens)], soakSource(i))
		if err != nil {
			t.Fatal(err)
		}
		warm = append(warm, c)
	}
	for _, c := range warm {
		c.Close()
	}
	time.Sleep(time.Second) // the proxy closes its side
	base := b.settle(b.proxyA, nil)

	var st soakStats
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup

	// Held sessions, opened 64 at a time.
	start := time.Now()
	var holders sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range cfg.held {
		holders.Add(1)
		wg.Go(func() {
			sem <- struct{}{}
			c, err := b.open(b.proxyA.addr, bulkTokens[i/50], soakSource(i))
			<-sem
			holders.Done()
			if err != nil {
				st.heldFailed.Add(1)
				st.fail("held session %d: %v", i, err)
				return
			}
			hold(ctx, c, uint32(i), cfg.interval, &st)
		})
	}
	holders.Wait() // each open is bounded by its dial's timeout
	openTime := time.Since(start)

	loadStart := time.Now()
	cpuStart := cpuTime(t, b.proxyA.cmd.Process.Pid)
	for i := range cfg.churners {
		wg.Go(func() { b.churn(ctx, bulkTokens[i%len(bulkTokens)], soakSource(100000+i), &st) })
	}
	wg.Go(func() { b.flood(ctx, bulkTokens[0], &st) })
	wg.Go(func() { b.crowd(ctx, cfg.crowd, &st) })

	// Faults, spread over the run; each must be recovered from.
	var faults []string
	at := func(frac float64) {
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(loadStart.Add(time.Duration(frac * float64(cfg.duration))))):
		}
	}
	at(0.2)
	q.Kill()
	t0 := time.Now()
	if err := b.vncTry(b.proxyA.addr, qemuToken); err == nil {
		t.Error("a VNC session opened with QEMU killed")
	}
	q, qaddr = qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: b.pkiDir, VerifyPeer: true})
	b.tokens[qemuToken] = resolver.Console{Type: "vnc", Address: qaddr}
	rewriteTokens(t, b.tokensFile, b.tokens)
	b.vncProbe(b.proxyA.addr, qemuToken, 60*time.Second)
	faults = append(faults, fmt.Sprintf("QEMU killed and started on a new port: VNC through proxy A again after %v", time.Since(t0).Round(time.Millisecond)))

	at(0.4)
	restResolver.cmd.Process.Kill()
	<-restResolver.done
	t0 = time.Now()
	if err := b.vncTry(proxyB.addr, libvirtToken); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("with the REST resolver down, proxy B answered %v, want 503", err)
	}
	restResolver = startDaemon(t, resolverArgs...)
	b.vncProbe(proxyB.addr, libvirtToken, 60*time.Second)
	faults = append(faults, fmt.Sprintf("REST resolver killed (proxy B: 503) and started again: VNC through proxy B again after %v", time.Since(t0).Round(time.Millisecond)))

	at(0.6)
	t0 = time.Now()
	d.Restart(t)
	b.vncProbe(bundled.addr, libvirtToken, 60*time.Second)
	b.vncProbe(proxyB.addr, libvirtToken, 60*time.Second)
	faults = append(faults, fmt.Sprintf("libvirtd restarted: VNC through the bundled server and proxy B again after %v", time.Since(t0).Round(time.Millisecond)))

	at(1)
	elapsed := time.Since(loadStart)
	peak := st.heldPeak.Load()
	a := b.measure(b.proxyA, false)
	stop()
	wg.Wait()
	after := b.settle(b.proxyA, &base)

	// The table.
	var tb strings.Builder
	row := func(k string, v any) { fmt.Fprintf(&tb, "  %-44s %v\n", k, v) }
	fmt.Fprintf(&tb, "soak: %v of load (race detector: %v)\n", elapsed.Round(time.Second), raceEnabled)
	row("concurrent sessions held", fmt.Sprintf("%d of %d%s, opened in %v (%.0f/s)", peak, cfg.held, cfg.heldNote, openTime.Round(time.Millisecond), float64(cfg.held)/openTime.Seconds()))
	row("held sessions that failed", st.heldFailed.Load())
	row("churn: sessions opened and closed", fmt.Sprintf("%d (%.1f/s), %d failed", st.churnOpened.Load(), float64(st.churnOpened.Load())/elapsed.Seconds(), st.churnFailed.Load()))
	row("churn: session setup (TLS, upgrade, dial)", st.setup.String())
	row("held sessions: frame round trip", st.echo.String())
	row("frames checked end to end", fmt.Sprintf("%d (%.1f MiB each way, %.2f MiB/s)", st.framesChecked.Load(), float64(st.bytesChecked.Load())/(1<<20), float64(st.bytesChecked.Load())/(1<<20)/elapsed.Seconds()))
	row("frames lost or reordered", st.outOfOrder.Load())
	row("frames crossed between sessions", st.crossed.Load())
	row("frames corrupted", st.corrupt.Load())
	row("refused-token flood (127.0.0.3)", fmt.Sprintf("%d refused (404/429), %d accepted, %d other", st.floodRefused.Load(), st.floodAccepted.Load(), st.floodOther.Load()))
	row("valid token beside the flood", fmt.Sprintf("%d opened, %d failed", st.validBesideFlood.Load(), st.validBesideFloodFailed.Load()))
	row("crowd (127.0.0.2) connections", fmt.Sprintf("%d tried, %d refused at the per-client cap, %d cut by the proxy", st.crowdTried.Load(), st.crowdRefused.Load(), st.crowdCut.Load()))
	for _, f := range faults {
		row("fault", f)
	}
	row("proxy A under load", fmt.Sprintf("%d fds, %d goroutines, heap %.1f MiB, RSS %.1f MiB", a.fds, a.goroutines, mib(a.heap), mib(a.rss)))
	row("proxy A CPU during the load", fmt.Sprintf("%.1f s (%.0f%% of one core)", (a.cpu-cpuStart).Seconds(), 100*(a.cpu-cpuStart).Seconds()/elapsed.Seconds()))
	row("proxy A before / after", fmt.Sprintf("fds %d / %d, goroutines %d / %d, heap %.1f / %.1f MiB, RSS %.1f / %.1f MiB",
		base.fds, after.fds, base.goroutines, after.goroutines, mib(base.heap), mib(after.heap), mib(base.rss), mib(after.rss)))
	t.Log("\n" + tb.String())

	for _, e := range st.errors {
		t.Error(e)
	}
	if st.crossed.Load()+st.outOfOrder.Load()+st.corrupt.Load() > 0 {
		t.Error("bytes were lost, reordered, corrupted or crossed")
	}
	if peak != int64(cfg.held) || st.heldFailed.Load() > 0 {
		t.Errorf("held %d sessions of %d", peak, cfg.held)
	}
	if st.framesChecked.Load() < int64(cfg.held) {
		t.Errorf("only %d frames checked", st.framesChecked.Load())
	}
	if st.churnFailed.Load() > 0 || st.churnOpened.Load() == 0 {
		t.Errorf("churn: %d opened, %d failed", st.churnOpened.Load(), st.churnFailed.Load())
	}
	if st.floodAccepted.Load() > 0 || st.floodRefused.Load() == 0 {
		t.Errorf("flood: %d refused, %d accepted", st.floodRefused.Load(), st.floodAccepted.Load())
	}
	if st.validBesideFlood.Load() == 0 || st.validBesideFloodFailed.Load() > 0 {
		t.Errorf("valid token beside the flood: %d opened, %d failed", st.validBesideFlood.Load(), st.validBesideFloodFailed.Load())
	}
	if st.crowdRefused.Load() == 0 {
		t.Error("no crowd connection was refused at the per-client cap")
	}
	// No token in any daemon's log.
	for _, d := range []*daemon{b.proxyA, proxyB, bundled, restResolver} {
		log := d.log.String()
		for tok := range b.tokens {
			if strings.Contains(log, tok) {
				t.Fatalf("a token appears in the log of %v", d.cmd.Args[1:3])
			}
		}
		if strings.Contains(log, libvirtToken) {
			t.Fatalf("the libvirt token appears in the log of %v", d.cmd.Args[1:3])
		}
	}
}

// runCleanup runs the binary at the end of a test, ignoring the outcome.
func runCleanup(args ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vcBinary, args...)
	cmd.Env = env()
	cmd.Run()
}

// soakSource is the source address of client i: 127.0.1.x, 50 clients
// an address, so that each stays within --max-conns-per-client.
func soakSource(i int) net.IP {
	n := i / 50
	return net.IPv4(127, 1+byte(n>>16), byte(n>>8), 1+byte(n))
}

func randomToken(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// soakEchoEnv makes the test binary TestSoak's echo consoles: its own
// process, so that their connections do not count against the test's
// open-file limit. The value is the PKI directory of the TLS one.
const soakEchoEnv = "VIRTCONSOLE_SOAK_ECHO"

// soakEchoMain serves two echo consoles, plain and TLS (client
// certificates required, as a QEMU TLS chardev with verify-peer), prints
// "plain=ADDR tls=ADDR" and serves until stdin ends.
func soakEchoMain(pkiDir string) {
	creds, err := tlscreds.Load(pkiDir, tlscreds.RoleServer)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serve := func(cfg *tls.Config) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() { // ends with the process
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				if cfg != nil {
					c = tls.Server(c, cfg)
				}
				go func() { nettest.Echo(c); c.Close() }()
			}
		}()
		return l.Addr().String()
	}
	fmt.Printf("plain=%s tls=%s\n", serve(nil), serve(creds.ServerConfig(tlscreds.DefaultPolicy(), true)))
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

var echoAddrsRE = regexp.MustCompile(`plain=(\S+) tls=(\S+)`)

// startEchoConsoles runs soakEchoMain in a child process until the test
// ends and returns the plain and the TLS console's addresses.
func startEchoConsoles(t *testing.T, pkiDir string) (plain, tlsAddr string) {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), soakEchoEnv+"="+pkiDir)
	cmd.Stdout, cmd.Stderr = out, out
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	done := launch(t, cmd, out.String)
	var m []string
	waitFor(t, 10*time.Second, "the echo consoles' addresses", func() bool {
		select {
		case <-done:
			t.Fatalf("echo consoles exited: %s", out.String())
		default:
		}
		m = echoAddrsRE.FindStringSubmatch(out.String())
		return m != nil
	})
	return m[1], m[2]
}

// open opens a session with token from source (nil: any).
func (b *soakBed) open(addr, token string, source net.IP) (net.Conn, error) {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	if source != nil {
		dialer.LocalAddr = &net.TCPAddr{IP: source}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return wsconn.Dial(ctx, "wss://"+addr+"/websockify", h, &wsconn.DialOptions{
		TLSConfig: b.tlsCfg, Subprotocols: []string{"binary"}, NetDialContext: dialer.DialContext})
}

// hold sends c a frame every interval (jittered by the session number)
// and checks each echo, until ctx ends.
func hold(ctx context.Context, c net.Conn, session uint32, interval time.Duration, st *soakStats) {
	defer c.Close()
	n := st.heldOpen.Add(1)
	for p := st.heldPeak.Load(); n > p && !st.heldPeak.CompareAndSwap(p, n); p = st.heldPeak.Load() {
	}
	defer st.heldOpen.Add(-1)
	want, got := make([]byte, frameLen), make([]byte, frameLen)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	// Start at a point in the interval that depends on the session, so
	// that the frames of all sessions spread out.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(session%97) * interval / 97):
	}
	for seq := uint64(0); ; seq++ {
		fillFrame(want, session, seq)
		sent := time.Now()
		c.SetDeadline(sent.Add(60 * time.Second))
		if _, err := c.Write(want); err != nil {
			st.heldFailed.Add(1)
			st.fail("held session %d: write frame %d: %v", session, seq, err)
			return
		}
		if _, err := io.ReadFull(c, got); err != nil {
			st.heldFailed.Add(1)
			st.fail("held session %d: read frame %d: %v", session, seq, err)
			return
		}
		st.echo.add(time.Since(sent))
		switch checkFrame(got, want, session, seq) {
		case frameOK:
			st.framesChecked.Add(1)
			st.bytesChecked.Add(frameLen)
		case frameCrossed:
			st.crossed.Add(1)
		case frameOutOfOrder:
			st.outOfOrder.Add(1)
		default:
			st.corrupt.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// churn opens sessions, sends one frame through each and closes it,
// until ctx ends.
func (b *soakBed) churn(ctx context.Context, token string, source net.IP, st *soakStats) {
	want, got := make([]byte, frameLen), make([]byte, frameLen)
	for seq := uint64(0); ctx.Err() == nil; seq++ {
		start := time.Now()
		c, err := b.open(b.proxyA.addr, token, source)
		st.setup.add(time.Since(start))
		if err != nil {
			st.churnFailed.Add(1)
			st.fail("churn: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		fillFrame(want, 1<<31, seq)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		_, err = c.Write(want)
		if err == nil {
			_, err = io.ReadFull(c, got)
		}
		c.Close()
		if err != nil || string(got) != string(want) {
			st.churnFailed.Add(1)
			st.fail("churn session %d: %v", seq, err)
			continue
		}
		st.churnOpened.Add(1)
	}
}

// flood presents unknown tokens from 127.0.0.3, about 200 a second, and
// every second opens a session with a valid token from the same address.
func (b *soakBed) flood(ctx context.Context, valid string, st *soakStats) {
	source := net.IPv4(127, 0, 0, 3)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(last) > time.Second {
			last = time.Now()
			if c, err := b.open(b.proxyA.addr, valid, source); err != nil {
				st.validBesideFloodFailed.Add(1)
				st.fail("valid token beside the flood: %v", err)
			} else {
				c.Close()
				st.validBesideFlood.Add(1)
			}
		}
		_, err := b.open(b.proxyA.addr, fmt.Sprintf("not-a-token-%d", i), source)
		var he *wsconn.HandshakeError
		switch {
		case err == nil:
			st.floodAccepted.Add(1)
		case errors.As(err, &he) && (he.StatusCode == 404 || he.StatusCode == 429):
			st.floodRefused.Add(1)
		default:
			st.floodOther.Add(1)
			st.fail("flood: %v", err)
		}
	}
}

// crowd keeps n connections from 127.0.0.2 to proxy A: half slowloris
// (a request's headers, a byte every 2 s, never finished), half idle
// keep-alive (one /healthz, then nothing). A connection the proxy closes
// is counted and replaced.
func (b *soakBed) crowd(ctx context.Context, n int, st *soakStats) {
	var wg sync.WaitGroup
	defer wg.Wait()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	for i := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				st.crowdTried.Add(1)
				raw, err := dialer.DialContext(ctx, "tcp", b.proxyA.addr)
				if err != nil {
					if ctx.Err() == nil {
						st.fail("crowd dial: %v", err)
					}
					return
				}
				c := tls.Client(raw, b.tlsCfg)
				stopClose := context.AfterFunc(ctx, func() { c.Close() })
				err = c.HandshakeContext(ctx)
				if err != nil {
					// connlimit closes a connection over the cap on
					// accept: the handshake sees its end.
					if ctx.Err() == nil {
						st.crowdRefused.Add(1)
					}
				} else if i%2 == 0 {
					err = slowloris(ctx, c)
				} else {
					err = idleKeepAlive(ctx, c)
				}
				stopClose()
				c.Close()
				if ctx.Err() != nil {
					return
				}
				if err == nil {
					st.crowdCut.Add(1)
				}
				select {
				case <-ctx.Done():
				case <-time.After(500 * time.Millisecond):
				}
			}
		})
	}
}

// slowloris sends a request's headers a byte every 2 s until the proxy
// closes the connection (nil) or ctx ends.
func slowloris(ctx context.Context, c net.Conn) error {
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"); err != nil {
		return err
	}
	for ctx.Err() == nil {
		if _, err := c.Write([]byte("X")); err != nil {
			return nil
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil // an answer (408) or the end
		}
	}
	return ctx.Err()
}

// idleKeepAlive asks for /healthz once and then waits for the proxy to
// close the idle connection (nil) or ctx to end.
func idleKeepAlive(ctx context.Context, c net.Conn) error {
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = br.ReadByte() // the proxy closes it
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		return errors.New("the proxy sent bytes on an idle connection")
	}
	return nil
}

// vncTry opens a VNC session through the proxy at addr and reads up to
// ServerInit.
func (b *soakBed) vncTry(addr, token string) error {
	c, err := b.open(addr, token, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	name, _, _, reason, err := rfbInit(c)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(name, "QEMU") { // libvirt's: "QEMU (DOMAIN)"
		return fmt.Errorf("ServerInit name %q, reason %q", name, reason)
	}
	return nil
}

// vncProbe waits up to timeout for a VNC session through addr to work.
func (b *soakBed) vncProbe(addr, token string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := b.vncTry(addr, token)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("VNC through %s: %v", addr, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// procFigures are one process's resources.
type procFigures struct {
	fds, goroutines int
	heap, rss       int64 // bytes
	cpu             time.Duration
}

// measure reads proxy A's fds and RSS from /proc, and its goroutines and
// heap (after a forced GC, with forceGC) from its debug listener.
func (b *soakBed) measure(d *daemon, forceGC bool) procFigures {
	b.t.Helper()
	pid := d.cmd.Process.Pid
	var f procFigures
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		b.t.Fatal(err)
	}
	f.fds = len(ents)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.t.Fatal(err)
	}
	if m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(status); m != nil {
		kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
		f.rss = kb << 10
	}
	f.cpu = cpuTime(b.t, pid)
	gr := b.debugGet("/debug/pprof/goroutine?debug=1")
	if m := regexp.MustCompile(`goroutine profile: total (\d+)`).FindStringSubmatch(gr); m != nil {
		f.goroutines, _ = strconv.Atoi(m[1])
	} else {
		b.t.Fatalf("no goroutine count in %.200q", gr)
	}
	path := "/debug/pprof/heap?debug=1"
	if forceGC {
		path += "&gc=1" // what is live, not what awaits collection
	}
	heap := b.debugGet(path)
	if m := regexp.MustCompile(`# HeapAlloc = (\d+)`).FindStringSubmatch(heap); m != nil {
		f.heap, _ = strconv.ParseInt(m[1], 10, 64)
	} else {
		b.t.Fatal("no HeapAlloc in the heap profile")
	}
	return f
}

func (b *soakBed) debugGet(path string) string {
	b.t.Helper()
	hc := &http.Client{Timeout: 2 * time.Minute} // under load too
	resp, err := hc.Get("http://" + b.debugA + path)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		b.t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return string(body)
}

// settle measures d once its sessions have ended; with a baseline, it
// waits up to 30 s for fds and goroutines to come back near it and then
// checks them and the heap.
func (b *soakBed) settle(d *daemon, base *procFigures) procFigures {
	b.t.Helper()
	f := b.measure(d, true)
	if base == nil {
		return f
	}
	near := func(f procFigures) bool {
		return f.fds <= base.fds+4 && f.goroutines <= base.goroutines+8
	}
	deadline := time.Now().Add(30 * time.Second)
	for !near(f) && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		f = b.measure(d, true)
	}
	if !near(f) {
		b.t.Errorf("after the load: %d fds and %d goroutines, baseline %d and %d (leak?)\n%s",
			f.fds, f.goroutines, base.fds, base.goroutines, b.debugGet("/debug/pprof/goroutine?debug=1"))
	}
	// Each measure forces a GC; sync.Pool's victim cache lets pooled
	// buffers survive one, so a few are allowed.
	heapNear := func(f procFigures) bool { return f.heap <= base.heap*2+16<<20 }
	for i := 0; i < 3 && !heapNear(f); i++ {
		f = b.measure(d, true)
	}
	if !heapNear(f) {
		prof := b.debugGet("/debug/pprof/heap?debug=1&gc=1")
		b.t.Errorf("heap after the load %.1f MiB, baseline %.1f MiB (leak?); the heap profile begins:\n%s",
			mib(f.heap), mib(base.heap), prof[:min(len(prof), 6000)])
	}
	return f
}

// cpuTime is the user and system CPU time a process has used, from
// /proc/PID/stat (in clock ticks of 1/100 s, as Linux reports them on
// the usual configurations).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command's closing parenthesis: utime is the 14th
	// field of the line, stime the 15th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// rewriteTokens replaces the token file atomically, as an operator's
// tooling would; the proxy reads it within its watch interval.
func rewriteTokens(t *testing.T, path string, tokens map[string]resolver.Console) {
	t.Helper()
	tmp := writeTokens(t, tokens)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// fileLimit is the hard limit on open files, which Go programs (the test
// and the proxy) raise their soft limit to by themselves.
func fileLimit(t *testing.T) int {
	t.Helper()
	var l unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &l); err != nil {
		t.Fatal(err)
	}
	return int(min(l.Max, 1<<30))
}
