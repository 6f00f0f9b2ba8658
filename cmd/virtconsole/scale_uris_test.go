package main

// Scale-out (issue 17): one replica over many hypervisors, each a libvirtd
// of its own (libvirttest.Start's and libvirttest.Instance's).

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// syncedLine is the resolver's log line when a URI is connected and
// synced, once per URI and again after each reconnection.
const syncedLine = `msg="libvirt connected and synced"`

// TestMeasureScaleOutManyURIs measures one replica's resolver against 1, 10 and
// 50 libvirt URIs, each a libvirtd of its own (the host's and
// libvirttest.Instance's) with one domain defined (not running) and its
// VNC console enabled: the time from starting "virtconsole server" until
// every URI is connected and synced (to waitFor's 20 ms polling), its
// resident memory then, and its open sockets (its listener and one
// connection per URI). A measurement, run when VIRTCONSOLE_MEASURE_SCALE
// is set; it fails if a URI does not sync.
func TestMeasureScaleOutManyURIs(t *testing.T) {
	needMeasure(t)
	hvs := []*libvirttest.Daemon{libvirttest.Start(t)}
	for n := 2; n <= 50; n++ {
		d := libvirttest.Instance(t, n)
		if n > 3 { // the other tests use 2 and 3; these stop when done
			t.Cleanup(func() { d.Kill(t) })
		}
		hvs = append(hvs, d)
	}
	for _, d := range hvs {
		enabledDomain(t, d, libvirttest.DomainOptions{VNC: true, NoStart: true}, "vnc")
	}
	dir := pki(t)
	for _, n := range []int{1, 10, 50} {
		var uris []string
		for _, d := range hvs[:n] {
			uris = append(uris, d.URI)
		}
		start := time.Now()
		r := startDaemon(t, replicaArgs(dir, uris...)...)
		waitFor(t, 2*time.Minute, strconv.Itoa(n)+" URIs synced", func() bool {
			return strings.Count(r.log.String(), syncedLine) >= n
		})
		took := time.Since(start)
		pid := r.cmd.Process.Pid
		t.Logf("%d URI(s): all synced %v after start; resident memory %s; %d open sockets",
			n, took.Round(time.Millisecond), procStatus(t, pid, "VmRSS"), sockets(t, pid))
	}
}

// procStatus returns the value of field in /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// sockets counts the sockets process pid has open.
func sockets(t *testing.T, pid int) int {
	t.Helper()
	fds, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// TestScaleOutHypervisorRestarts: a replica over three hypervisors (three
// libvirtds, a running domain on each); the third's libvirtd is killed:
// the sessions open on the others go on, new sessions to the others open
// while it is down and /readyz stays ok; it comes back: the replica
// reconnects and resyncs, and a session to its domain opens.
func TestScaleOutHypervisorRestarts(t *testing.T) {
	hvs := []*libvirttest.Daemon{libvirttest.Start(t), libvirttest.Instance(t, 2), libvirttest.Instance(t, 3)}
	var uris, names []string
	for _, d := range hvs {
		dom := enabledDomain(t, d, libvirttest.DomainOptions{VNC: true}, "vnc")
		uris, names = append(uris, d.URI), append(names, dom.Name)
	}
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	r := startDaemon(t, replicaArgs(dir, uris...)...)
	waitFor(t, 60*time.Second, "3 URIs synced", func() bool {
		return strings.Count(r.log.String(), syncedLine) >= 3
	})
	open := func(k int) net.Conn {
		t.Helper()
		ws, err := openConsole(t, r.addr, ca, tokenAt(t, uris[k], names[k], "vnc"), "header")
		if err != nil {
			t.Fatalf("a session to hypervisor %d: %v", k+1, err)
		}
		t.Cleanup(func() { ws.Close() })
		rfbHandshake(t, ws)
		return ws
	}
	stillOpen := func(when string, sessions ...net.Conn) {
		t.Helper()
		for k, ws := range sessions {
			ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := ws.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatalf("%s: the session to hypervisor %d: %v; want it still open", when, k+1, err)
			}
		}
	}
	live := []net.Conn{open(0), open(1)}

	hvs[2].Kill(t)
	waitFor(t, 30*time.Second, "the replica noticing hypervisor 3 gone", func() bool {
		return strings.Contains(r.log.String(), "libvirt connection lost")
	})
	stillOpen("hypervisor 3 down", live...)
	for k := range 2 {
		open(k).Close()
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, ca)}, Timeout: 10 * time.Second}
	resp, err := hc.Get("https://" + r.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz with hypervisor 3 down: %s; want 200 (two of three synced)", resp.Status)
	}

	hvs[2].Restart(t)
	waitFor(t, 60*time.Second, "hypervisor 3 resynced", func() bool {
		return strings.Count(r.log.String(), syncedLine) >= 4
	})
	open(2)
	stillOpen("hypervisor 3 back", live...)
}
