package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy/proxymetrics/metricstest"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// The secrets of TestMetricsAndAudit: none may appear in any output.
const (
	opsVNCToken    = "Ops-VNC-Token-7f3a9c"
	opsSerialToken = "Ops-Serial-Token-51be02"
	opsBadToken    = "Ops-Unknown-Token-c0ffee"
	opsVNCPassword = "vncpw-9d1e"
)

var metricsListeningRE = regexp.MustCompile(`metrics listening" address=http://(\S+)/metrics`)

// TestMetricsAndAudit runs the built proxy with --metrics-listen and
// --audit-log against real QEMU (VNC with VeNCrypt x509 and a password,
// a TLS serial chardev), over mutual TLS: a refused token, a VNC session
// and a serial session. /metrics, read with Prometheus's own text parser,
// moves as they happen (bytes while the session runs); the audit log
// holds exactly the expected events, line by line; no token and no
// password appear in the metrics, the log or the audit log. A SIGHUP
// after the file is renamed makes the proxy write to a new one.
func TestMetricsAndAudit(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, vncAddr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true, Password: opsVNCPassword})
	_, serialAddr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		opsVNCToken:    {Type: "vnc", Address: vncAddr, Password: opsVNCPassword},
		opsSerialToken: {Type: "serial", Address: serialAddr},
	})
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--require-client-cert",
		"--connect-tls-dir", dir, "--tokens", tokens, "--metrics-listen", "127.0.0.1:0", "--audit-log", auditPath)
	maddr := metricsAddr(t, p)
	if fi, err := os.Stat(auditPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log: %v, mode %v; want it created 0600", err, fi.Mode())
	}
	creds, err := tlscreds.Load(dir, tlscreds.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := creds.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1")
	dial := func(token string) (net.Conn, error) {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+token)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return wsconn.Dial(ctx, "wss://"+p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: tlsCfg, Subprotocols: []string{"binary"}})
	}

	m := scrape(t, maddr)
	for _, kind := range []string{"vnc", "serial"} {
		if v := m.value(t, "virtconsole_sessions_active", "kind", kind); v != 0 {
			t.Fatalf("sessions_active{kind=%s} = %v before any session", kind, v)
		}
	}
	if m.families["go_goroutines"] == nil || m.families["process_resident_memory_bytes"] == nil {
		t.Fatal("no Go runtime or process metrics")
	}

	// A refusal.
	_, err = dial(opsBadToken)
	var he *wsconn.HandshakeError
	if !errors.As(err, &he) || he.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown token: %v, want 404", err)
	}

	// A VNC session: counted while it runs.
	c, err := dial(opsVNCToken)
	if err != nil {
		t.Fatal(err)
	}
	if name, _, _, reason := rfbHandshake(t, c); name != "QEMU" {
		t.Fatalf("ServerInit name %q, reason %q", name, reason)
	}
	m = scrape(t, maddr)
	if v := m.value(t, "virtconsole_sessions_active", "kind", "vnc"); v != 1 {
		t.Errorf("sessions_active{kind=vnc} = %v during the session, want 1", v)
	}
	if v := m.value(t, "virtconsole_sessions_started_total", "kind", "vnc", "outcome", "ok"); v != 1 {
		t.Errorf("sessions_started_total{vnc,ok} = %v, want 1", v)
	}
	// The proxy negotiates both legs itself; QEMU's ServerInit (24 bytes
	// and the name) is the first of its bytes passed through.
	if v := m.value(t, "virtconsole_console_bytes_total", "kind", "vnc", "direction", "from_console"); v < float64(24+len("QEMU")) {
		t.Errorf("console_bytes_total{vnc,from_console} = %v during the session, want >= 28", v)
	}
	if h := m.histogram(t, "virtconsole_session_setup_duration_seconds", "kind", "vnc"); h.GetSampleCount() != 1 || h.GetSampleSum() <= 0 {
		t.Errorf("session_setup_duration_seconds{vnc}: count %d sum %v, want 1 and > 0", h.GetSampleCount(), h.GetSampleSum())
	}
	c.Close()
	waitFor(t, 10*time.Second, "the VNC session's end in /metrics", func() bool {
		return scrape(t, maddr).value(t, "virtconsole_sessions_ended_total", "kind", "vnc", "outcome", "closed") == 1
	})

	// A serial session toward QEMU's monitor, bytes both ways.
	c, err = dial(opsSerialToken)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("info version\n"))
	readUntil(t, c, "(qemu)", 2) // the first prompt, then the one after the answer
	c.Close()
	waitFor(t, 10*time.Second, "the serial session's end in /metrics", func() bool {
		return scrape(t, maddr).value(t, "virtconsole_sessions_ended_total", "kind", "serial", "outcome", "closed") == 1
	})

	m = scrape(t, maddr)
	for _, want := range []struct {
		name   string
		labels []string
		value  float64
	}{
		{"virtconsole_sessions_active", []string{"kind", "vnc"}, 0},
		{"virtconsole_sessions_active", []string{"kind", "serial"}, 0},
		{"virtconsole_sessions_started_total", []string{"kind", "serial", "outcome", "ok"}, 1},
		{"virtconsole_requests_refused_total", []string{"status", "404"}, 1},
	} {
		if v := m.value(t, want.name, want.labels...); v != want.value {
			t.Errorf("%s%v = %v, want %v", want.name, want.labels, v, want.value)
		}
	}
	if v := m.value(t, "virtconsole_console_bytes_total", "kind", "serial", "direction", "to_console"); v != float64(len("info version\n")) {
		t.Errorf("console_bytes_total{serial,to_console} = %v, want %d", v, len("info version\n"))
	}
	if h := m.histogram(t, "virtconsole_resolver_lookup_duration_seconds", "backend", "static", "result", "found"); h.GetSampleCount() != 2 {
		t.Errorf("resolver lookups found: %d, want 2", h.GetSampleCount())
	}
	if h := m.histogram(t, "virtconsole_resolver_lookup_duration_seconds", "backend", "static", "result", "not_found"); h.GetSampleCount() != 1 {
		t.Errorf("resolver lookups not_found: %d, want 1", h.GetSampleCount())
	}

	events := readAudit(t, auditPath)
	var got []string
	for _, e := range events {
		got = append(got, e["event"].(string)+" "+str(e["kind"])+" "+str(e["outcome"]))
	}
	want := []string{"refusal  ", "session_start vnc ok", "session_end vnc closed", "session_start serial ok", "session_end serial closed"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("audit events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	subject := creds.Cert.Leaf.Subject.String()
	for i, e := range events {
		tok := map[int]string{0: opsBadToken, 1: opsVNCToken, 2: opsVNCToken, 3: opsSerialToken, 4: opsSerialToken}[i]
		if e["token_id"] != tokenID(tok) || e["client_cert"] != subject || !strings.HasPrefix(str(e["client"]), "127.0.0.1:") {
			t.Errorf("audit event %d: token_id %v (want %s), client_cert %v (want %s), client %v", i, e["token_id"], tokenID(tok), e["client_cert"], subject, e["client"])
		}
		if _, err := time.Parse(time.RFC3339Nano, str(e["time"])); err != nil {
			t.Errorf("audit event %d: time: %v", i, err)
		}
	}
	if events[0]["status"] != float64(404) || events[0]["reason"] != "unknown token" {
		t.Errorf("refusal: %v", events[0])
	}
	if events[1]["console"] != vncAddr || events[1]["session_id"] == nil || events[1]["session_id"] != events[2]["session_id"] {
		t.Errorf("vnc start/end: %v / %v", events[1], events[2])
	}
	if end := events[4]; end["bytes_to_console"] != float64(len("info version\n")) || end["bytes_from_console"].(float64) <= 0 || end["duration_seconds"].(float64) <= 0 {
		t.Errorf("serial session end: %v", end)
	}

	// logrotate: rename, SIGHUP, and the next event goes to a new file.
	rotated := auditPath + ".1"
	if err := os.Rename(auditPath, rotated); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload log line", func() bool {
		return regexp.MustCompile(`msg=reloaded parts="[^"]*audit log`).MatchString(p.log.String())
	})
	if _, err := dial(opsBadToken); err == nil {
		t.Fatal("unknown token accepted")
	}
	if n := len(readAudit(t, auditPath)); n != 1 {
		t.Errorf("%d events in the new audit log, want 1", n)
	}
	if n := len(readAudit(t, rotated)); n != len(want) {
		t.Errorf("%d events in the rotated audit log, want %d", n, len(want))
	}

	body := scrapeText(t, maddr)
	audit, _ := os.ReadFile(rotated)
	audit2, _ := os.ReadFile(auditPath)
	for _, secret := range []string{opsVNCToken, opsSerialToken, opsBadToken, opsVNCPassword} {
		for what, out := range map[string]string{"metrics": body, "log": p.log.String(), "audit log": string(audit) + string(audit2)} {
			if strings.Contains(out, secret) {
				t.Errorf("the %s contains the secret %q", what, secret)
			}
		}
	}
}

// TestMetricsListenRefusesNonLoopback: --metrics-listen on every address
// needs --metrics-listen-any, and the error says so.
func TestMetricsListenRefusesNonLoopback(t *testing.T) {
	tokens := writeTokens(t, map[string]resolver.Console{"x": {Type: "serial", Address: "127.0.0.1:1", Insecure: true}})
	r := run(t, nil, "server", "proxy", "--listen", "127.0.0.1:0", "--listen-insecure", "--connect-insecure", "--tokens", tokens, "--metrics-listen", ":0")
	if r.code != cmdutil.ExitUsage || !strings.Contains(r.stderr, "--metrics-listen-any") {
		t.Fatalf("exit %d, stderr %q; want 2 and a hint at --metrics-listen-any", r.code, r.stderr)
	}
}

// TestResolverDaemonMetrics: "server resolver --metrics-listen" counts
// its lookups by backend and result, and its metrics hold no token.
func TestResolverDaemonMetrics(t *testing.T) {
	tokens := writeTokens(t, map[string]resolver.Console{opsSerialToken: {Type: "serial", Address: "127.0.0.1:4555"}})
	d := startDaemon(t, "server", "resolver", "--listen", "127.0.0.1:0", "--listen-insecure", "--tokens", tokens, "--metrics-listen", "127.0.0.1:0")
	maddr := metricsAddr(t, d)
	for _, tok := range []string{opsSerialToken, opsBadToken, opsBadToken} {
		resp, err := http.Get("http://" + d.addr + "/consoleresolver/token/" + tok)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	s := scrape(t, maddr)
	for result, n := range map[string]uint64{"found": 1, "not_found": 2} {
		if c := s.histogram(t, "virtconsole_resolver_lookup_duration_seconds", "backend", "static", "result", result).GetSampleCount(); c != n {
			t.Errorf("%s lookups: %d, want %d", result, c, n)
		}
	}
	if body := scrapeText(t, maddr); strings.Contains(body, opsSerialToken) || strings.Contains(body, opsBadToken) {
		t.Error("a token is in the metrics")
	}
}

// metricsAddr waits for d's "metrics listening" line and returns the
// address in it.
func metricsAddr(t *testing.T, d *daemon) string {
	t.Helper()
	return loggedAddr(t, d, metricsListeningRE, "the metrics listening line")
}

// loggedAddr waits for d to log a line that re matches and returns re's
// first group: the address of one of its listeners.
func loggedAddr(t *testing.T, d *daemon, re *regexp.Regexp, what string) string {
	t.Helper()
	var addr string
	waitFor(t, 10*time.Second, what, func() bool {
		m := re.FindStringSubmatch(d.log.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func tokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:12]
}

// readAudit parses an audit log line by line: each must be one JSON object.
func readAudit(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	return events
}

// readUntil reads c until what has arrived n times.
func readUntil(t *testing.T, c net.Conn, what string, n int) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var got []byte
	buf := make([]byte, 4096)
	for bytes.Count(got, []byte(what)) < n {
		nr, err := c.Read(buf)
		got = append(got, buf[:nr]...)
		if err != nil {
			t.Fatalf("waiting for %q: %v (got %q)", what, err, got)
		}
	}
}

// metricsSnapshot is one scrape, parsed by Prometheus's text parser.
type metricsSnapshot struct {
	families map[string]*dto.MetricFamily
}

func scrapeText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	return string(b)
}

func scrape(t *testing.T, addr string) metricsSnapshot {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(scrapeText(t, addr)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return metricsSnapshot{fams}
}

func (s metricsSnapshot) metric(t *testing.T, name string, labels ...string) *dto.Metric {
	t.Helper()
	return metricstest.Series(t, []*dto.MetricFamily{s.families[name]}, name, labels...)
}

func (s metricsSnapshot) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metricstest.Value(t, s.metric(t, name, labels...))
}

func (s metricsSnapshot) histogram(t *testing.T, name string, labels ...string) *dto.Histogram {
	t.Helper()
	h := s.metric(t, name, labels...).GetHistogram()
	if h == nil {
		t.Fatalf("%s is not a histogram", name)
	}
	return h
}
