package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// notifySocket is the service manager's end of sd_notify: a unixgram
// socket whose path is NOTIFY_SOCKET for the rest of the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// nextNotify reads one datagram from the notify socket.
func nextNotify(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no sd_notify datagram: %v", err)
	}
	return string(buf[:n])
}

// TestNotifyReload: the reload seam's messages are what
// Type=notify-reload wants: RELOADING=1 with the monotonic time, then
// READY=1.
func TestNotifyReload(t *testing.T) {
	c := notifySocket(t)
	log := testFactory(io.Discard).Logger()
	notifyReloading(log)
	if got := nextNotify(t, c); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*$`).MatchString(got) {
		t.Errorf("reloading: %q", got)
	}
	notifyReady(log)
	if got := nextNotify(t, c); got != "READY=1" {
		t.Errorf("ready: %q", got)
	}
}

// TestServeNotifies: serve tells the service manager READY=1 once it
// listens, feeds the watchdog while it runs (WATCHDOG_USEC), and says
// STOPPING=1 when it starts draining; the watchdog goroutine ends with
// the running phase (serve waits for it).
func TestServeNotifies(t *testing.T) {
	c := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "100000") // pinged every 50 ms
	release := make(chan struct{})
	d := &daemon{name: "test", addr: "127.0.0.1:0", handler: http.NotFoundHandler(), drainTimeout: 5 * time.Second,
		drain: func(context.Context) error { <-release; return nil }}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.serve(ctx, testFactory(io.Discard).Logger()) }()

	var got []string
	for len(got) < 4 {
		got = append(got, nextNotify(t, c))
	}
	if s := strings.Join(got, " "); s != "READY=1 WATCHDOG=1 WATCHDOG=1 WATCHDOG=1" {
		t.Errorf("while running: %q", got)
	}
	cancel()
	for m := nextNotify(t, c); m != "STOPPING=1"; m = nextNotify(t, c) {
		if m != "WATCHDOG=1" {
			t.Fatalf("before STOPPING=1: %q", m)
		}
	}
	// Draining: systemd's watchdog is off once the service is stopping,
	// and so are the pings (a ping may still be queued).
	for i := 0; !drained(c); i++ {
		if i == 3 {
			t.Fatal("the watchdog is still fed while draining")
		}
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// drained reads what is queued on c and reports whether nothing came
// for 300 ms.
func drained(c *net.UnixConn) bool {
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for i := 0; ; i++ {
		if _, err := c.Read(make([]byte, 64)); err != nil {
			return i == 0
		}
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	}
}

// TestServeWithoutSystemd: no NOTIFY_SOCKET, no LISTEN_FDS: the daemon
// listens on its address as before and sends nothing.
func TestServeWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("LISTEN_FDS", "")
	addr := startTestDaemon(t, &daemon{handler: okHandler})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
