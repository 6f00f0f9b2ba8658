//go:build linux

package proxy

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/park"
)

// joinDirections counts the goroutines running a tunnel.Join direction
// on a goroutine of Join's own (the other runs on the session's).
func joinDirections() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "tunnel.(*joiner).run(")
}

// With Parking, an idle session's console side waits in the poller: the
// session keeps one goroutine, its viewer is not disturbed (the idle
// report is not a console failure), bytes flow again both ways at once,
// and Shutdown ends it while it is parked.
func TestParkingIdleSession(t *testing.T) {
	p, srv, logs := newProxy(t, map[string]resolver.Console{"ok": {Type: "serial", Address: echoServer(t), Insecure: true}})
	pk, err := park.New()
	if err != nil {
		t.Fatal(err)
	}
	defer pk.Close()
	p.Parking = pk
	p.NoSerialSharing = true // a session of its own: Join, not a hub
	c, err := dial(t, wsURL(srv), bearer("ok"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo: %q, %v; want %q", got, err, msg)
		}
	}
	for range 2 {
		echo("hello")
		if joinDirections() != 1 {
			t.Fatalf("%d Join goroutines in a running session, want 1", joinDirections())
		}
		deadline := time.Now().Add(ParkIdle + 5*time.Second)
		for joinDirections() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the idle session did not park within %v", ParkIdle+5*time.Second)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	echo(strings.Repeat("bulk", 20000))
	if strings.Contains(logs.String(), "unexpectedly") {
		t.Fatalf("the idle report closed the viewer: %s", logs.String())
	}

	for joinDirections() != 0 { // parked again, bounded by the test's timeout
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("parked session still open after Shutdown")
	}
}
