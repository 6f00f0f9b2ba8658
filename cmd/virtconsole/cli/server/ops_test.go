package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
)

// TestMetricsAddr: --metrics-listen is loopback unless
// --metrics-listen-any, and a bad value says what is wanted.
func TestMetricsAddr(t *testing.T) {
	for _, tc := range []struct {
		addr string
		any  bool
		ok   bool
	}{
		{"", false, true}, {"127.0.0.1:9464", false, true}, {"[::1]:9464", false, true}, {"localhost:9464", false, true},
		{":9464", false, false}, {"0.0.0.0:9464", false, false}, {"192.0.2.1:9464", false, false}, {"node1:9464", false, false},
		{":9464", true, true}, {"192.0.2.1:9464", true, true}, {"9464", true, false},
	} {
		o := Ops{MetricsListen: tc.addr, MetricsListenAny: tc.any}
		_, err := o.metricsAddr()
		if (err == nil) != tc.ok {
			t.Errorf("%q any=%v: %v", tc.addr, tc.any, err)
		}
		if err != nil && !strings.Contains(err.Error(), "--metrics-listen") {
			t.Errorf("%q: error %q does not name the flag", tc.addr, err)
		}
	}
}

// TestDaemonServesMetrics: the metrics listener serves /metrics (and
// nothing else) beside the daemon's own, and stops with it.
func TestDaemonServesMetrics(t *testing.T) {
	var logs qemutest.Buffer
	d := &daemon{name: "test", addr: "127.0.0.1:0", handler: okHandler, drainTimeout: time.Second}
	m, err := (&Ops{MetricsListen: "127.0.0.1:0"}).metrics(d)
	if err != nil || m == nil {
		t.Fatalf("metrics: %v", err)
	}
	ready := make(chan net.Addr, 1)
	d.ready = func(a net.Addr) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.serve(ctx, slog.New(slog.NewTextHandler(&logs, nil))) }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatal(err)
	}
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no metrics listening line: %s", logs.String())
		}
		if _, rest, ok := strings.Cut(logs.String(), `metrics listening" address=http://`); ok {
			addr, _, _ = strings.Cut(rest, "/metrics")
		}
	}
	get := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/metrics") != 200 || get("/healthz") != 404 {
		t.Fatal("want /metrics 200 and nothing else")
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("the metrics listener outlives the daemon")
	}
}

type reopener struct {
	n   atomic.Int32
	err error
}

func (r *reopener) Reopen() error { r.n.Add(1); return r.err }

// TestReloadOnSignal: each signal runs every reload part; a failure is
// logged in one line, reported, and the loop goes on; it returns when
// ctx ends. A config file that fails stops the reload before the rest.
func TestReloadOnSignal(t *testing.T) {
	var logs bytes.Buffer // read once the loop has returned
	hup := make(chan os.Signal)
	ok, bad := &reopener{}, &reopener{err: errors.New("permission denied")}
	var results []error
	d := &daemon{
		reloads:  []reloadPart{{name: "a", reload: ok.Reopen}, {name: "b", reload: bad.Reopen}},
		reloaded: func(err error) { results = append(results, err) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.reloadOnSignal(ctx, slog.New(slog.NewTextHandler(&logs, nil)), hup); close(done) }()
	hup <- syscall.SIGHUP
	hup <- syscall.SIGHUP
	cancel()
	<-done
	if ok.n.Load() != 2 || bad.n.Load() != 2 {
		t.Fatalf("reloaded %d and %d times, want 2", ok.n.Load(), bad.n.Load())
	}
	if len(results) != 2 || results[0] == nil {
		t.Fatalf("results %v, want two failures", results)
	}
	if !strings.Contains(logs.String(), "b: permission denied") || strings.Count(logs.String(), "\n") != 2 {
		t.Fatalf("want one line per reload naming the failure: %s", logs.String())
	}

	// A broken config file: nothing else is reloaded.
	ok.n.Store(0)
	d.reloads = []reloadPart{{name: configPart, reload: bad.Reopen}, {name: "a", reload: ok.Reopen}}
	if err := d.reload(slog.New(slog.DiscardHandler)); err == nil || ok.n.Load() != 0 {
		t.Fatalf("reload with a broken config: %v, other parts run %d times", err, ok.n.Load())
	}
}
