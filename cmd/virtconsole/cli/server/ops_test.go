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

// TestReopen: each signal reopens every file; a failure is logged and
// the loop goes on; it returns when ctx ends.
func TestReopen(t *testing.T) {
	var logs bytes.Buffer // read once reopen has returned
	hup := make(chan os.Signal)
	ok, bad := &reopener{}, &reopener{err: errors.New("permission denied")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { reopen(ctx, slog.New(slog.NewTextHandler(&logs, nil)), hup, ok, bad); close(done) }()
	hup <- syscall.SIGHUP
	hup <- syscall.SIGHUP
	cancel()
	<-done
	if ok.n.Load() != 2 || bad.n.Load() != 2 {
		t.Fatalf("reopened %d and %d times, want 2", ok.n.Load(), bad.n.Load())
	}
	if !strings.Contains(logs.String(), "permission denied") {
		t.Fatalf("failure not logged: %s", logs.String())
	}
}
