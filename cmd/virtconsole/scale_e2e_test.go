package main

// Scale-out (issue 17): three replicas of "virtconsole server" over one
// real libvirtd, behind a real HAProxy running the shipped haproxy.cfg.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// balancerSource is the address HAProxy connects to the replicas from
// (haproxy.cfg's "source"): their --trusted-proxies. Clients connect from
// 127.0.0.1, so a replica that logs peer=127.0.0.1 read the PROXY header.
const balancerSource = "127.0.0.2"

// replicaArgs are the flags of each replica in these tests, with a
// --connect for each of uris (qemu:///system if none).
func replicaArgs(dir string, uris ...string) []string {
	if len(uris) == 0 {
		uris = []string{libvirttest.URI}
	}
	args := []string{"server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir,
		"--trusted-proxies", balancerSource, "--drain-grace", "3s", "--drain-timeout", "1s", "--max-failures", "1000"}
	for _, u := range uris {
		args = append(args, "--connect", u)
	}
	return args
}

// balancer runs HAProxy with cmd/virtconsole/haproxy.cfg, its addresses
// and paths replaced by the test's, in front of replicas; it returns the
// frontend's address and HAProxy's log (one line per request, naming the
// replica).
func balancer(t *testing.T, pkiDir string, replicas []string) (string, *syncBuffer) {
	t.Helper()
	front, _, log := balancerWithGateway(t, pkiDir, replicas, nil)
	return front, log
}

// balancerWithGateway is balancer that also fronts the replicas' SPICE
// CONNECT gateways (haproxy.cfg's spice-connect frontend), at gateways
// (their addresses, in the order of replicas); it returns that
// frontend's address too ("" without gateways, whose frontend then
// listens on a free port nobody uses).
func balancerWithGateway(t *testing.T, pkiDir string, replicas, gateways []string) (string, string, *syncBuffer) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed (.ci/install-deps installs it)")
		}
		t.Skip("haproxy not installed")
	}
	cfg, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	pem := filepath.Join(tmp, "virtconsole.pem")
	var both []byte
	for _, f := range []string{"server-cert.pem", "server-key.pem"} {
		b, err := os.ReadFile(filepath.Join(pkiDir, f))
		if err != nil {
			t.Fatal(err)
		}
		both = append(both, b...)
	}
	if err := os.WriteFile(pem, both, 0o600); err != nil {
		t.Fatal(err)
	}
	front := "127.0.0.1:" + strconv.Itoa(qemutest.FreePort(t))
	replace := []string{
		"127.0.0.1:6443", front,
		"/etc/haproxy/virtconsole.pem", pem,
		"/etc/haproxy/virtconsole-ca.pem", filepath.Join(pkiDir, "ca-cert.pem"),
	}
	connectFront := "127.0.0.1:" + strconv.Itoa(qemutest.FreePort(t))
	replace = append(replace, "127.0.0.1:3128", connectFront)
	for i := range 3 {
		gw := "127.0.0.1:" + strconv.Itoa(qemutest.FreePort(t)) // no gateway: health checks fail, unused
		if gateways != nil {
			gw = gateways[i]
		}
		_, port, _ := net.SplitHostPort(replicas[i])
		replace = append(replace, fmt.Sprintf("127.0.0.1:744%d", i+1), replicas[i],
			fmt.Sprintf("127.0.0.1:314%d", i+1), gw, fmt.Sprintf("port 744%d", i+1), "port "+port)
	}
	s := string(cfg)
	for i := 0; i < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("haproxy.cfg no longer has %q", replace[i])
		}
		s = strings.ReplaceAll(s, replace[i], replace[i+1])
	}
	path := filepath.Join(tmp, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = log, log
	done := launch(t, cmd, log.String)
	waitFor(t, 30*time.Second, "HAProxy's frontend", func() bool {
		select {
		case <-done:
			t.Fatalf("haproxy exited: %s", log.String())
		default:
		}
		c, err := net.Dial("tcp", front)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if gateways == nil {
		connectFront = ""
	}
	return front, connectFront, log
}

// credentialForms are the three ways a viewer carries its token, which
// the balancer must hash alike.
var credentialForms = []string{"header", "cookie", "query"}

// openConsole opens a websocket to /websockify at addr with token carried
// in form; a refusal is a *wsconn.HandshakeError.
func openConsole(t *testing.T, addr, ca, token, form string) (net.Conn, error) {
	h := http.Header{}
	u := "wss://" + addr + "/websockify"
	switch form {
	case "header":
		h.Set("Authorization", "Bearer "+token)
	case "cookie":
		h.Set("Cookie", "token="+token)
	case "query":
		u += "?token=" + url.QueryEscape(token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return wsconn.Dial(ctx, u, h, &wsconn.DialOptions{TLSConfig: clientTLS(t, ca), Subprotocols: []string{"binary"}})
}

// race opens n websockets at once with token, the forms in turn, and
// returns the sessions opened and the count of each refusal status.
func race(t *testing.T, addrs []string, ca, token string, n int) ([]net.Conn, map[int]int) {
	var (
		mu       sync.Mutex
		opened   []net.Conn
		statuses = map[int]int{}
		wg       sync.WaitGroup
		start    = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			ws, err := openConsole(t, addrs[i%len(addrs)], ca, token, credentialForms[i%len(credentialForms)])
			mu.Lock()
			defer mu.Unlock()
			var he *wsconn.HandshakeError
			switch {
			case err == nil:
				opened = append(opened, ws)
			case errors.As(err, &he):
				statuses[he.StatusCode]++
			default:
				t.Errorf("attempt %d: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Cleanup(func() {
		for _, ws := range opened {
			ws.Close()
		}
	})
	return opened, statuses
}

var haproxyRefusedRE = regexp.MustCompile(`replicas/(replica\d) \S+ 404 `)

// routed counts HAProxy's log lines of 404s per replica after offset.
func routed(log string, offset int) map[string]int {
	n := map[string]int{}
	for _, m := range haproxyRefusedRE.FindAllStringSubmatch(log[offset:], -1) {
		n[m[1]]++
	}
	return n
}

// enabledDomain defines and starts a domain of d with opts and enables
// its console of kind for the proxy.
func enabledDomain(t *testing.T, d *libvirttest.Daemon, opts libvirttest.DomainOptions, kind string) *libvirttest.Domain {
	t.Helper()
	dom := d.NewDomain(t, opts)
	if r := runEnv(t, libvirtEnv(d.URI), nil, "enable", dom.Name, "--type", kind); r.code != 0 {
		t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
	}
	return dom
}

// TestScaleOutHAProxy: three replicas of "virtconsole server" over one
// libvirtd behind HAProxy with the shipped haproxy.cfg.
func TestScaleOutHAProxy(t *testing.T) {
	d := libvirttest.Start(t)
	dom := enabledDomain(t, d, libvirttest.DomainOptions{VNC: true}, "vnc")
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	var replicas []*daemon
	var addrs []string
	for range 3 {
		r := startDaemon(t, replicaArgs(dir)...)
		replicas, addrs = append(replicas, r), append(addrs, r.addr)
	}
	front, hlog := balancer(t, dir, addrs)
	waitFor(t, 30*time.Second, "the balancer's first session", func() bool {
		ws, err := openConsole(t, front, ca, tokenOf(t, dom.Name, "vnc"), "header")
		if err == nil {
			ws.Close()
		}
		return err == nil
	})

	// 200 attempts at once with one single-use token, in its three
	// forms: all land on one replica, exactly one opens a session, the
	// others get 404.
	t.Run("single-use", func(t *testing.T) {
		singleUse(t, front, ca, hlog, replicas, func(t *testing.T) string { return tokenOf(t, dom.Name, "vnc") })
	})

	// Without the balancer: the same token at all three replicas at once,
	// round after round. Libvirt secrets have no compare-and-swap, so two
	// replicas may both accept it: measured here, not prevented.
	t.Run("race-without-balancer", func(t *testing.T) {
		const rounds = 10
		doubles, total := 0, 0
		for range rounds {
			opened, statuses := race(t, addrs, ca, tokenOf(t, dom.Name, "vnc"), 3)
			if len(opened)+statuses[http.StatusNotFound] != 3 {
				t.Fatalf("%d sessions and refusals %v; want only sessions and 404s", len(opened), statuses)
			}
			total += len(opened)
			if len(opened) > 1 {
				doubles++
			}
			for _, ws := range opened {
				ws.Close()
			}
			time.Sleep(200 * time.Millisecond) // every replica has the fresh token
		}
		if total < rounds {
			t.Fatalf("%d sessions in %d rounds: a round opened none", total, rounds)
		}
		t.Logf("without the balancer, one token opened more than one session in %d of %d rounds of 3 simultaneous attempts (%d sessions)", doubles, rounds, total)
	})

	// remote-viewer through "virtconsole spice DOMAIN" and the balancer:
	// every channel is a websocket of its own with the session's token,
	// so all land on the replica holding the session's registry.
	t.Run("spice-remote-viewer", func(t *testing.T) {
		bins := qemutest.Need(t, "xvfb-run", "remote-viewer")
		sdom := enabledDomain(t, d, libvirttest.DomainOptions{SPICE: true}, "spice")
		before := sessionStarts(replicas)
		v := startGraphics(t, "spice", sdom.Name, "--proxy", "wss://"+front, "--ca-file", ca)
		x := startXvfb(t, bins[1], "spice://127.0.0.1:"+strconv.Itoa(v.port))
		oneReplica(t, x, replicas, before)
	})

	// One replica gets SIGTERM with sessions on it: the balancer takes it
	// out within its health checks while it still accepts (--drain-grace),
	// new sessions for the same console go on opening, its sessions end
	// with a close reason after --drain-timeout, and the other replicas'
	// sessions are not disturbed.
	t.Run("replica-stops", func(t *testing.T) {
		replicaStops(t, front, ca, hlog, replicas, []func(*testing.T) string{func(t *testing.T) string { return tokenOf(t, dom.Name, "vnc") }})
	})
}

// TestScaleOutHAProxyTwoHypervisors: the single-use and replica-stops
// tests of TestScaleOutHAProxy with two hypervisors behind the replicas
// (the host's libvirtd and a second one, libvirttest.Instance), each
// replica connected to both with a --connect each, a domain on each.
func TestScaleOutHAProxyTwoHypervisors(t *testing.T) {
	hvs := []*libvirttest.Daemon{libvirttest.Start(t), libvirttest.Instance(t, 2)}
	var uris []string
	var tokens []func(*testing.T) string
	for _, d := range hvs {
		dom := enabledDomain(t, d, libvirttest.DomainOptions{VNC: true}, "vnc")
		uris = append(uris, d.URI)
		tokens = append(tokens, func(t *testing.T) string { return tokenAt(t, d.URI, dom.Name, "vnc") })
		// The domain is the hypervisor's alone.
		for _, other := range hvs {
			if _, err := other.TryVirsh("domstate", dom.UUID); (other == d) != (err == nil) {
				t.Fatalf("domain %s: on %s %v", dom.Name, other.URI, err)
			}
		}
	}
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	var replicas []*daemon
	var addrs []string
	for range 3 {
		r := startDaemon(t, replicaArgs(dir, uris...)...)
		replicas, addrs = append(replicas, r), append(addrs, r.addr)
	}
	front, hlog := balancer(t, dir, addrs)
	for k, token := range tokens {
		waitFor(t, 30*time.Second, fmt.Sprintf("a session to hypervisor %d through the balancer", k+1), func() bool {
			ws, err := openConsole(t, front, ca, token(t), "header")
			if err == nil {
				rfbHandshake(t, ws)
				ws.Close()
			}
			return err == nil
		})
	}
	for k, token := range tokens {
		t.Run(fmt.Sprintf("single-use-hypervisor%d", k+1), func(t *testing.T) {
			singleUse(t, front, ca, hlog, replicas, token)
		})
	}
	// remote-viewer through "virtconsole spice DOMAIN -c" the second
	// hypervisor and the balancer: every channel on one replica.
	t.Run("spice-remote-viewer-hypervisor2", func(t *testing.T) {
		bins := qemutest.Need(t, "xvfb-run", "remote-viewer")
		sdom := enabledDomain(t, hvs[1], libvirttest.DomainOptions{SPICE: true}, "spice")
		before := sessionStarts(replicas)
		v := startGraphics(t, "spice", sdom.Name, "-c", hvs[1].URI, "--proxy", "wss://"+front, "--ca-file", ca)
		x := startXvfb(t, bins[1], "spice://127.0.0.1:"+strconv.Itoa(v.port))
		oneReplica(t, x, replicas, before)
	})
	t.Run("replica-stops", func(t *testing.T) {
		replicaStops(t, front, ca, hlog, replicas, tokens)
	})
}

// singleUse offers one single-use token (of token) 200 times at once
// through the balancer at front, in its three forms: all land on one
// replica, exactly one opens a session, the others get 404, and the
// replicas log the client's address from the PROXY header.
func singleUse(t *testing.T, front, ca string, hlog *syncBuffer, replicas []*daemon, token func(*testing.T) string) {
	offset := len(hlog.String())
	opened, statuses := race(t, []string{front}, ca, token(t), 200)
	if len(opened) != 1 || statuses[http.StatusNotFound] != 199 {
		t.Fatalf("%d sessions and refusals %v; want 1 session and 199 × 404", len(opened), statuses)
	}
	rfbHandshake(t, opened[0])
	var per map[string]int
	waitFor(t, 10*time.Second, "HAProxy's log of 199 refusals", func() bool {
		per = routed(hlog.String(), offset)
		total := 0
		for _, n := range per {
			total += n
		}
		return total >= 199
	})
	if len(per) != 1 {
		t.Fatalf("one token's requests went to several replicas: %v", per)
	}
	if strings.Contains(hlog.String(), "token=") {
		t.Fatal("HAProxy logged a token")
	}
	// The replica saw the client's address from the PROXY header,
	// not the balancer's.
	logs := replicas[0].log.String() + replicas[1].log.String() + replicas[2].log.String()
	if !strings.Contains(logs, "peer=127.0.0.1:") || strings.Contains(logs, "peer="+balancerSource) {
		t.Fatalf("the replicas did not log the client's address from the PROXY header:\n%s", logs)
	}
}

// replicaStops: one replica gets SIGTERM with sessions on it, for the
// consoles of tokens in turn: the balancer takes it out within its health
// checks while it still accepts (--drain-grace), new sessions for the same
// consoles go on opening, its sessions end with a close reason after
// --drain-timeout, and the other replicas' sessions are not disturbed.
func replicaStops(t *testing.T, front, ca string, hlog *syncBuffer, replicas []*daemon, tokens []func(*testing.T) string) {
	sessions := map[int][]net.Conn{}
	for i := 0; i < 30 && (i < len(tokens) || len(sessions[0]) == 0 || len(sessions[1])+len(sessions[2]) == 0); i++ {
		before := sessionStarts(replicas)
		ws, err := openConsole(t, front, ca, tokens[i%len(tokens)](t), credentialForms[i%3])
		if err != nil {
			t.Fatal(err)
		}
		rfbHandshake(t, ws)
		t.Cleanup(func() { ws.Close() })
		after := sessionStarts(replicas)
		for k := range replicas {
			if after[k] > before[k] {
				sessions[k] = append(sessions[k], ws)
			}
		}
	}
	if len(sessions[0]) == 0 || len(sessions[1])+len(sessions[2]) == 0 {
		t.Fatalf("sessions per replica %v: want some on replica 1 and on another", sessions)
	}
	if err := replicas[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	// New sessions for the same consoles all open, before, during and
	// after the balancer's health checks take the replica out.
	for n := 0; time.Since(stopped) < 6*time.Second || n < len(tokens); n++ {
		ws, err := openConsole(t, front, ca, tokens[n%len(tokens)](t), "header")
		if err != nil {
			t.Fatalf("a new session (console %d) %v after SIGTERM to replica 1: %v", n%len(tokens)+1, time.Since(stopped).Round(time.Millisecond), err)
		}
		rfbHandshake(t, ws)
		ws.Close()
	}
	for _, ws := range sessions[0] {
		ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, ws)
		pc := ws.(*wsconn.Conn).PeerClose()
		if err != nil || pc == nil || pc.Code != wsconn.CloseGoingAway || pc.Reason != "proxy shutting down" {
			t.Fatalf("a session on the stopped replica ended with %v, close %v; want 1001 proxy shutting down", err, pc)
		}
	}
	for _, ws := range append(sessions[1], sessions[2]...) {
		ws.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := ws.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("a session on another replica: %v; want it still open", err)
		}
	}
	if !strings.Contains(replicas[0].log.String(), "draining: /readyz fails") {
		t.Fatalf("the stopped replica did not drain:\n%s", replicas[0].log.String())
	}
	if !strings.Contains(hlog.String(), "Server replicas/replica1 is DOWN") {
		t.Fatalf("HAProxy did not take replica1 out:\n%s", hlog.String())
	}
}

// oneReplica waits until remote-viewer (x) has its session's main,
// display, inputs and cursor channels open on one of replicas, and fails
// t if another replica got any session since before (sessionStarts); it
// returns the replica's index.
func oneReplica(t *testing.T, x *xvfbProc, replicas []*daemon, before []int) int {
	t.Helper()
	holder := -1
	waitFor(t, 90*time.Second, "main, display, inputs and cursor on one replica", func() bool {
		select {
		case <-x.done:
			t.Fatalf("remote-viewer exited: %s", x.out.String())
		default:
		}
		for k, r := range replicas {
			for _, chans := range sessionChannels(r.log.String()) {
				if containsAll(chans, viewerSessionChannels) {
					holder = k
					return true
				}
			}
		}
		return false
	})
	after := sessionStarts(replicas)
	for k := range replicas {
		if k != holder && after[k] != before[k] {
			t.Errorf("replica %d got %d of the SPICE session's channels; want all on replica %d", k+1, after[k]-before[k], holder+1)
		}
	}
	return holder
}

// needMeasure: the TestMeasure* tests measure (they take minutes and
// assert no figure); "make measure-scale" runs them, "make test" leaves
// them out (-skip '^TestMeasure'). Run by hand without the variable, one
// says why it does nothing.
func needMeasure(t *testing.T) {
	t.Helper()
	if os.Getenv("VIRTCONSOLE_MEASURE_SCALE") == "" {
		t.Skip("a measurement: run it with make measure-scale (VIRTCONSOLE_MEASURE_SCALE=1)")
	}
}

// sessionStarts counts each replica's "session start" lines.
func sessionStarts(replicas []*daemon) []int {
	n := make([]int, len(replicas))
	for i, r := range replicas {
		n[i] = strings.Count(r.log.String(), `msg="session start"`)
	}
	return n
}

// TestMeasureScaleOutThroughput measures the VNC sessions opened per second
// through HAProxy with 1 and 3 replicas (reusable tokens of four domains,
// eight viewers opening sessions in a loop: websocket, TLS on both legs,
// the console's and the viewer's RFB handshakes). A measurement, run when
// VIRTCONSOLE_MEASURE_SCALE is set; it fails if a session fails.
func TestMeasureScaleOutThroughput(t *testing.T) {
	needMeasure(t)
	d := libvirttest.Start(t)
	var tokens []string
	for range 4 {
		dom := enabledDomain(t, d, libvirttest.DomainOptions{VNC: true}, "vnc")
		tokens = append(tokens, tokenOf(t, dom.Name, "vnc"))
	}
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	var addrs []string
	for range 3 {
		addrs = append(addrs, startDaemon(t, append(replicaArgs(dir), "--single-use=false")...).addr)
	}
	for _, n := range []int{1, 3} {
		servers := addrs[:n]
		for len(servers) < 3 {
			servers = append(servers, addrs[0]) // one replica under three names
		}
		front, _ := balancer(t, dir, servers)
		waitFor(t, 30*time.Second, "the balancer", func() bool {
			ws, err := openConsole(t, front, ca, tokens[0], "header")
			if err == nil {
				ws.Close()
			}
			return err == nil
		})
		const workers, period = 8, 5 * time.Second
		var opened atomic.Int64
		var wg sync.WaitGroup
		end := time.Now().Add(period)
		for i := range workers {
			wg.Go(func() {
				for time.Now().Before(end) {
					ws, err := openConsole(t, front, ca, tokens[i%len(tokens)], "header")
					if err != nil {
						t.Errorf("a session: %v", err)
						return
					}
					if _, _, _, _, err := rfbInit(ws); err != nil {
						t.Errorf("a session's RFB handshake: %v", err)
					}
					ws.Close()
					opened.Add(1)
				}
			})
		}
		wg.Wait()
		t.Logf("%d replica(s): %d sessions in %v: %.1f sessions/s", n, opened.Load(), period, float64(opened.Load())/period.Seconds())
	}
}

// TestMeasureScaleOutRaceWindow measures the single-use race window without the
// balancer: one token is offered to replica 1, then after a delay to
// replica 2, and the rounds in which both open a session are counted per
// delay. A measurement, run when VIRTCONSOLE_MEASURE_SCALE is set.
func TestMeasureScaleOutRaceWindow(t *testing.T) {
	needMeasure(t)
	d := libvirttest.Start(t)
	dom := enabledDomain(t, d, libvirttest.DomainOptions{VNC: true}, "vnc")
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	a, b := startDaemon(t, replicaArgs(dir)...), startDaemon(t, replicaArgs(dir)...)
	const rounds = 10
	for _, delay := range []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
		doubles := 0
		for range rounds {
			tok := tokenOf(t, dom.Name, "vnc")
			var wg sync.WaitGroup
			var opened atomic.Int64
			for i, addr := range []string{a.addr, b.addr} {
				wg.Go(func() {
					time.Sleep(time.Duration(i) * delay)
					if ws, err := openConsole(t, addr, ca, tok, "header"); err == nil {
						opened.Add(1)
						ws.Close()
					}
				})
			}
			wg.Wait()
			if opened.Load() == 0 {
				t.Fatalf("delay %v: neither replica opened a session", delay)
			}
			if opened.Load() > 1 {
				doubles++
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Logf("second replica %v after the first: both opened a session in %d of %d rounds", delay, doubles, rounds)
	}
}

// TestREADMEScalingOut: the "Scaling out" walkthrough as a script (see
// runREADME) against a libvirt domain with a pty serial console, with
// these changes to its text: free ports for 6443 and 7441-7443 and a
// temporary directory for /etc/haproxy (in the script and in its copy of
// haproxy.cfg), a temporary directory for /etc/pki/virtconsole, and myvm
// a test domain.
func TestREADMEScalingOut(t *testing.T) {
	needRoot(t)
	d := libvirttest.Start(t)
	kernel, initrd := libvirttest.LinuxGuest(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{Kernel: kernel, Initrd: initrd, Cmdline: qemutest.GuestCmdline})
	waitFor(t, 90*time.Second, "the guest's shell", func() bool {
		ok, _ := askInPipe(t, dom.Name)
		return ok
	})
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy not installed (.ci/install-deps installs it)")
	}
	subs := map[string]string{}
	for _, a := range []string{"127.0.0.1:6443", "127.0.0.1:7441", "127.0.0.1:7442", "127.0.0.1:7443"} {
		subs[a] = "127.0.0.1:" + strconv.Itoa(qemutest.FreePort(t))
	}
	subs["/etc/haproxy"] = t.TempDir()
	cfg, err := os.ReadFile("haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	cfgCopy := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgCopy, []byte(replacer(subs).Replace(string(cfg))), 0o600); err != nil {
		t.Fatal(err)
	}
	subs["myvm"] = dom.Name
	subs["/etc/pki/virtconsole"] = filepath.Join(t.TempDir(), "pki")
	subs["cmd/virtconsole/haproxy.cfg"] = cfgCopy
	out := runREADME(t, t.TempDir(), readmeSection(t, "Scaling out"), subs, 3*time.Minute)
	if !strings.Contains(out, "Linux (none)") {
		t.Fatalf("no answer to uname -a through the balancer:\n%s", out)
	}
	if !regexp.MustCompile(`consoles~? replicas/replica\d .* 101 `).MatchString(out) {
		t.Fatalf("no session through HAProxy in its log:\n%s", out)
	}
}
