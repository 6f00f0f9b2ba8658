package main

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// exclusiveViewer connects an RFB viewer to port that asks QEMU for
// exclusive access (ClientInit shared-flag 0), and drains what QEMU
// sends; alive reports whether its connection is still open.
func exclusiveViewer(t *testing.T, port int) (c net.Conn, alive func() bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if name, _, _, reason, err := rfbInitShared(c, false); err != nil || name != "QEMU" {
		t.Fatalf("viewer: desktop %q, failure %q, %v", name, reason, err)
	}
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(done) }()
	return c, func() bool {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
}

// TestVNCSharedViewOnly: a view viewer ("virtconsole vnc --view") and a
// control viewer of one QEMU, each asking for exclusive access: neither
// is disconnected when the other connects (the proxy asks QEMU for a
// shared session for both), the view viewer's keys and pointer never
// reach the guest, the control viewer's do.
func TestVNCSharedViewOnly(t *testing.T) {
	p, common, boot := vncGuestBehindProxy(t, "share-vnc")
	viewV := startVNC(t, append(common, "--view")...)
	ctlV := startVNC(t, common...)
	serial := boot()

	view, viewAlive := exclusiveViewer(t, viewV.port)
	ctl, ctlAlive := exclusiveViewer(t, ctlV.port)
	time.Sleep(time.Second)
	if !viewAlive() || !ctlAlive() {
		t.Fatalf("a viewer was disconnected by the other's exclusive ClientInit: view alive %v, control alive %v", viewAlive(), ctlAlive())
	}

	// The control viewer's keys work (so the shell reads tty1); then the
	// view viewer types and points; then the control viewer types again,
	// which the shell answers only after what came before.
	typeIntoGuest(t, serial, func(line string) error { return rfbType(ctl, line) })
	for i := range 3 {
		if err := rfbType(view, "\necho view-$((5+5)) > /dev/ttyS0\n"); err != nil {
			t.Fatal(err)
		}
		rfbPoint(view, uint16(100+20*i), 120)
	}
	const after = "echo after-$((8+1)) > /dev/ttyS0"
	for deadline := time.Now().Add(60 * time.Second); !serial.Contains("after-9"); {
		if time.Now().After(deadline) {
			t.Fatalf("no answer to the control viewer's second line; serial: %q", serial.Output())
		}
		rfbType(ctl, "\n"+after+"\n")
		waitForOr(2*time.Second, func() bool { return serial.Contains("after-9") })
	}
	if serial.Contains("view-10") {
		t.Fatalf("the view viewer's keys reached the guest: %q", serial.Output())
	}
	pointIntoGuest(t, serial, func(i int) error { return rfbPoint(ctl, uint16(100+10*(i%20)), 100) })
	if !viewAlive() || !ctlAlive() {
		t.Fatalf("a viewer was disconnected: view alive %v, control alive %v", viewAlive(), ctlAlive())
	}
	waitFor(t, 10*time.Second, "both roles in the proxy's log", func() bool {
		l := p.log.String()
		return strings.Contains(l, "role=view") && strings.Contains(l, "role=control")
	})
}
