package connect

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// The backoff doubles from Min to Max and every wait is within ±Jitter
// of the step; the extremes of the random source give the bounds.
func TestBackoffBounds(t *testing.T) {
	steps := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	for _, tc := range []struct {
		name   string
		r      float64
		factor float64
	}{{"low", 0, 0.8}, {"middle", 0.5, 1}, {"high", 0.999999999, 1.2}} {
		b := NewBackoff()
		b.Rand = func() float64 { return tc.r }
		for i, step := range steps {
			got := b.Next()
			want := time.Duration(float64(step) * tc.factor)
			if diff := got - want; diff < -time.Millisecond || diff > time.Millisecond {
				t.Errorf("%s: wait %d = %v, want %v", tc.name, i+1, got, want)
			}
		}
	}
	// With the real random source: within the bounds, and not all equal.
	b := NewBackoff()
	seen := map[time.Duration]bool{}
	for range 100 {
		b.Reset()
		d := b.Next()
		if d < 400*time.Millisecond || d > 600*time.Millisecond {
			t.Fatalf("first wait %v outside 0.5s ±20%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Fatalf("only %d distinct first waits in 100: no jitter", len(seen))
	}
	for range 50 {
		if d := b.Next(); d > 36*time.Second {
			t.Fatalf("wait %v above the cap 30s +20%%", d)
		}
	}
}

// fakeProxy answers each upgrade as answer (by attempt number) says: a
// status, or 0 to accept and echo.
func fakeProxy(t *testing.T, answer func(n int) int) (url, ca string, attempts *atomic.Int32) {
	t.Helper()
	attempts = new(atomic.Int32)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status := answer(int(attempts.Add(1)))
		if status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
		c, err := wsconn.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}))
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca = filepath.Join(t.TempDir(), "ca.pem")
	writeCert(t, ca, srv.Certificate().Raw)
	return "wss://" + srv.Listener.Addr().String(), ca, attempts
}

func fastReconnector(t *testing.T, url, ca string, o ReconnectOptions) (*Reconnector, *bytes.Buffer) {
	t.Helper()
	f := testFactory(t, map[string]string{EnvToken: "tok"})
	r := resolveArgs(t, f, nil, "--proxy", url, "--ca-file", ca)
	var errOut bytes.Buffer
	rc := NewReconnector(r, o, &errOut)
	rc.Backoff = &Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: 0.2}
	return rc, &errOut
}

// An unreachable console (502) is tried again until it comes back, one
// line per attempt, then "reconnected".
func TestRedialRetriesUntilBack(t *testing.T) {
	url, ca, attempts := fakeProxy(t, func(n int) int {
		if n < 4 {
			return http.StatusBadGateway
		}
		return 0
	})
	rc, errOut := fastReconnector(t, url, ca, ReconnectOptions{Enabled: true})
	c, err := rc.Redial(context.Background(), "the console closed")
	if err != nil {
		t.Fatalf("Redial: %v; stderr %q", err, errOut)
	}
	c.Close()
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	if attempts.Load() != 4 || len(lines) != 5 {
		t.Fatalf("%d attempts, stderr:\n%s", attempts.Load(), errOut)
	}
	if !strings.HasPrefix(lines[0], "virtconsole: connection lost (the console closed); reconnecting in 0.0s...") ||
		!strings.Contains(lines[1], "reconnect failed (proxy ") || !strings.Contains(lines[1], "(HTTP 502)") ||
		lines[4] != "virtconsole: reconnected" {
		t.Fatalf("stderr:\n%s", errOut)
	}
}

// A fixed token the proxy refuses on reconnect (spent, revoked) ends it
// at once, with the refused exit code and a line that says what to do.
func TestRedialRefusedToken(t *testing.T) {
	url, ca, attempts := fakeProxy(t, func(int) int { return http.StatusNotFound })
	rc, errOut := fastReconnector(t, url, ca, ReconnectOptions{Enabled: true})
	_, err := rc.Redial(context.Background(), "x")
	if err == nil || attempts.Load() != 1 {
		t.Fatalf("Redial: %v after %d attempts", err, attempts.Load())
	}
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitRefused {
		t.Fatalf("exit code %d, want %d", code, cmdutil.ExitRefused)
	}
	if !strings.Contains(err.Error(), "the token was refused on reconnect") || !strings.Contains(err.Error(), "get a new one") {
		t.Fatalf("message %q; stderr %q", err, errOut)
	}
}

// --reconnect-max bounds the retrying.
func TestRedialGivesUp(t *testing.T) {
	url, ca, _ := fakeProxy(t, func(int) int { return http.StatusBadGateway })
	rc, _ := fastReconnector(t, url, ca, ReconnectOptions{Enabled: true, Max: 300 * time.Millisecond})
	start := time.Now()
	_, err := rc.Redial(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "gave up reconnecting after 300ms") {
		t.Fatalf("Redial: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("gave up after %v", d)
	}
}

// An interrupt while waiting ends it with ctx's error.
func TestRedialInterrupted(t *testing.T) {
	url, ca, _ := fakeProxy(t, func(int) int { return http.StatusBadGateway })
	rc, _ := fastReconnector(t, url, ca, ReconnectOptions{Enabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := rc.Redial(ctx, "x"); cmdutil.ExitCode(err) != cmdutil.ExitInterrupted && err != context.DeadlineExceeded {
		t.Fatalf("Redial: %v", err)
	}
}
