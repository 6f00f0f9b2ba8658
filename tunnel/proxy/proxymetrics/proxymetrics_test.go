package proxymetrics

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/proxy/proxymetrics/metricstest"
)

// find returns the series of name with the given labels (name, value
// pairs) in m's registry, or fails.
func find(t *testing.T, m *Metrics, name string, labels ...string) *dto.Metric {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	return metricstest.Series(t, fams, name, labels...)
}

func counter(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	return metricstest.Value(t, find(t, m, name, labels...))
}

// The Observer's events move the metrics; bytes of a running session are
// counted at scrape time, and move to the totals at its end without
// being counted twice.
func TestObserverMetrics(t *testing.T) {
	m := New()
	m.Refused(&proxy.Refusal{Status: 404})
	m.Refused(&proxy.Refusal{Status: 404})
	m.Refused(&proxy.Refusal{Status: 401})
	if counter(t, m, "virtconsole_requests_refused_total", "status", "404") != 2 || counter(t, m, "virtconsole_requests_refused_total", "status", "401") != 1 {
		t.Fatal("refusals not counted by status")
	}

	s := &proxy.Session{Target: proxy.TargetInfo{Kind: protocols.KindVNC}, Setup: 30 * time.Millisecond}
	m.SessionStart(s)
	s.BytesToConsole.Add(10)
	s.BytesFromConsole.Add(1000)
	if g := find(t, m, "virtconsole_sessions_active", "kind", "vnc").GetGauge().GetValue(); g != 1 {
		t.Fatalf("active %v, want 1", g)
	}
	if v := counter(t, m, "virtconsole_console_bytes_total", "kind", "vnc", "direction", "from_console"); v != 1000 {
		t.Fatalf("live bytes from console %v, want 1000", v)
	}
	h := find(t, m, "virtconsole_session_setup_duration_seconds", "kind", "vnc").GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() != 0.03 {
		t.Fatalf("setup histogram count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	s.BytesToConsole.Add(5)
	s.Outcome = proxy.EndError
	m.SessionEnd(s)
	if v := counter(t, m, "virtconsole_console_bytes_total", "kind", "vnc", "direction", "to_console"); v != 15 {
		t.Fatalf("bytes to console after the end %v, want 15", v)
	}
	if counter(t, m, "virtconsole_sessions_ended_total", "kind", "vnc", "outcome", "error") != 1 ||
		find(t, m, "virtconsole_sessions_active", "kind", "vnc").GetGauge().GetValue() != 0 {
		t.Fatal("end not counted")
	}

	failed := &proxy.Session{Target: proxy.TargetInfo{Kind: protocols.KindSPICE}, StartErr: errors.New("no")}
	m.SessionStart(failed)
	if counter(t, m, "virtconsole_sessions_started_total", "kind", "spice", "outcome", "failed") != 1 ||
		find(t, m, "virtconsole_sessions_active", "kind", "spice").GetGauge().GetValue() != 0 {
		t.Fatal("a failed start is counted as failed and is not active")
	}

	m.LibvirtConnState("qemu:///system", true)
	if find(t, m, "virtconsole_libvirt_connection_up", "uri", "qemu:///system").GetGauge().GetValue() != 1 {
		t.Fatal("libvirt gauge not set")
	}
	m.LibvirtConnState("qemu:///system", false)
	if find(t, m, "virtconsole_libvirt_connection_up", "uri", "qemu:///system").GetGauge().GetValue() != 0 {
		t.Fatal("libvirt gauge not cleared")
	}
	m.LibvirtConnState("qemu+ssh://root:hunter2@hv1/system", true)
	find(t, m, "virtconsole_libvirt_connection_up", "uri", "qemu+ssh://root:xxxxx@hv1/system")
}

// The metrics follow Prometheus's naming conventions (promlint), and the
// handler serves them with the Go runtime and process collectors.
func TestNamingAndHandler(t *testing.T) {
	m := New()
	m.Refused(&proxy.Refusal{Status: 404})
	m.Resolver(BackendStatic, resolver.ResolverFunc(func(context.Context, string) (protocols.Target, error) {
		return protocols.Target{}, resolver.ErrNotFound
	})).Resolve(context.Background(), "x")
	m.LibvirtConnState("qemu:///system", true)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "virtconsole_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "virtconsole_requests_refused_total{status=\"404\"} 1"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// The resolver wrapper times each lookup by backend and result, and
// keeps what the proxy asks of the resolver: single use and refunds.
func TestResolver(t *testing.T) {
	m := New()
	st, err := resolver.NewStatic(map[string]resolver.Console{"tok": {Type: "serial", Address: "127.0.0.1:1", Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	st.SetSingleUse(true)
	r := m.Resolver(BackendStatic, st)
	ctx := context.Background()
	if _, err := r.Resolve(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	r.Resolve(ctx, "nope")
	rf, ok := r.(resolver.Refunder)
	if !ok || !rf.SingleUse() {
		t.Fatal("the wrapper hides the static resolver's single use or refunds")
	}
	if err := rf.Consume(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, "tok"); !errors.Is(err, resolver.ErrNotFound) {
		t.Fatalf("consumed token resolves: %v", err)
	}
	if err := rf.Refund(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	for result, n := range map[string]uint64{"found": 1, "not_found": 2} {
		if c := find(t, m, "virtconsole_resolver_lookup_duration_seconds", "backend", "static", "result", result).GetHistogram().GetSampleCount(); c != n {
			t.Errorf("%s lookups: %d, want %d", result, c, n)
		}
	}

	plain := m.Resolver(BackendREST, resolver.ResolverFunc(func(context.Context, string) (protocols.Target, error) {
		return protocols.Target{}, resolver.ErrUnavailable
	}))
	if _, ok := plain.(resolver.SingleUser); ok {
		t.Fatal("the wrapper of a plain resolver claims single use")
	}
	plain.Resolve(ctx, "x")
	if find(t, m, "virtconsole_resolver_lookup_duration_seconds", "backend", "rest", "result", "unavailable").GetHistogram().GetSampleCount() != 1 {
		t.Error("unavailable lookup not counted")
	}
}
