package main

// Keyboard input end to end: a scripted viewer types a shell command at
// "virtconsole vnc/spice --local-port", through the websocket and "server
// proxy" into QEMU, whose PS/2 keyboard feeds the tiny Linux guest's
// shell on tty1 (qemutest.GraphicsGuest); the command writes to the
// guest's serial port, which the test reads on QEMU's chardev directly.
// The answer can only come from keystrokes that made the whole trip.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/keymap"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/spice/spicetest"
	"github.com/virtconsole/virtconsole/resolver"
)

// The line typed into the guest's tty1 shell and what it prints on the
// serial port: the shell computes it, so it is not an echo of the keys.
const (
	keyboardLine   = "echo kbd-$((6*7)) > /dev/ttyS0"
	keyboardAnswer = "kbd-42"
	// keyPause spaces key messages: QEMU's PS/2 keyboard queues 16
	// scancode bytes and drops what arrives while it is full.
	keyPause = 10 * time.Millisecond
)

// typeIntoGuest waits for the guest's ready line, then types the line
// with typeLine until the answer arrives on the serial port: every 2 s
// (tty1's shell may not read yet; a dropped key spoils one attempt), for
// at most 60 s. Each attempt starts with Enter, which ends whatever an
// earlier one left on the shell's line.
func typeIntoGuest(t *testing.T, serial *qemutest.SerialConsole, typeLine func(string) error) {
	t.Helper()
	start := time.Now()
	serial.Wait(t, qemutest.GuestReady, 60*time.Second)
	t.Logf("guest ready after %v", time.Since(start).Round(time.Millisecond))
	if serial.Contains(keyboardAnswer) {
		t.Fatalf("%q on the serial port before anything was typed", keyboardAnswer)
	}
	typed := time.Now()
	deadline := typed.Add(60 * time.Second)
	for attempt := 1; ; attempt++ {
		if err := typeLine("\n" + keyboardLine + "\n"); err != nil {
			t.Fatalf("typing, attempt %d: %v", attempt, err)
		}
		if waitForOr(2*time.Second, func() bool { return serial.Contains(keyboardAnswer) }) {
			t.Logf("%q on the serial port %v after typing began (attempt %d)",
				keyboardAnswer, time.Since(typed).Round(time.Millisecond), attempt)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the serial port after %d attempts; it has: %q", keyboardAnswer, attempt, serial.Output())
		}
	}
}

// pointIntoGuest moves the pointer with move (i counts the attempts)
// until the guest prints qemutest.GuestPointer on its serial port: its
// virtio mouse or tablet saw an event. At most 30 s.
func pointIntoGuest(t *testing.T, serial *qemutest.SerialConsole, move func(i int) error) {
	t.Helper()
	if serial.Contains(qemutest.GuestPointer) {
		t.Fatalf("%q on the serial port before the pointer moved", qemutest.GuestPointer)
	}
	start := time.Now()
	for i := 0; ; i++ {
		if err := move(i); err != nil {
			t.Fatalf("moving the pointer, attempt %d: %v", i+1, err)
		}
		if waitForOr(time.Second, func() bool { return serial.Contains(qemutest.GuestPointer) }) {
			t.Logf("the guest saw the pointer move %v after the first event (attempt %d)", time.Since(start).Round(time.Millisecond), i+1)
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no %q on the serial port after %d attempts; it has: %q", qemutest.GuestPointer, i+1, serial.Output())
		}
	}
}

// rfbPoint sends an RFB PointerEvent (RFC 6143 §7.5.5: u8 type 5, u8
// button mask, u16 x, u16 y, big-endian) with no button pressed.
func rfbPoint(c net.Conn, x, y uint16) error {
	m := []byte{5, 0}
	m = binary.BigEndian.AppendUint16(m, x)
	_, err := c.Write(binary.BigEndian.AppendUint16(m, y))
	return err
}

// vncGuestBehindProxy starts the tiny graphics guest's QEMU (paused) with
// VeNCrypt x509 and client certificates, and a proxy whose token file
// maps token to it. It returns the proxy, the client flags that reach
// the console through it with token, and boot, which resumes the guest
// and returns its serial console (QEMU's output is logged if the test
// fails). proxyArgs are more flags of the proxy.
func vncGuestBehindProxy(t *testing.T, token string, proxyArgs ...string) (p *daemon, clientArgs []string, boot func() *qemutest.SerialConsole) {
	t.Helper()
	b := startVNCBed(t, token, proxyArgs...)
	return b.p, b.proxyArgs, b.boot
}

// vncBed is vncGuestBehindProxy's test bed, with what direct mode needs.
type vncBed struct {
	p    *daemon
	q    *qemutest.QEMU
	addr string // QEMU's VNC address
	pki  string // the CA, server and client credentials of every leg
	// proxyArgs reach the console through the proxy with the token;
	// directArgs reach QEMU directly with client certificates.
	proxyArgs, directArgs []string
	boot                  func() *qemutest.SerialConsole
}

// startVNCBed is vncGuestBehindProxy returning the whole bed.
func startVNCBed(t *testing.T, token string, proxyArgs ...string) *vncBed {
	t.Helper()
	return startVNCBedPassword(t, token, "", proxyArgs...)
}

// startVNCBedPassword is startVNCBed with VNC password authentication
// on QEMU's side when password is set (the token file gives the proxy
// the password).
func startVNCBedPassword(t *testing.T, token, password string, proxyArgs ...string) *vncBed {
	t.Helper()
	g := qemutest.NewGraphicsGuest(t)
	dir := pki(t)
	q, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true, Args: g.Args, Password: password})
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "vnc", Address: addr, Password: password}})
	p := startDaemon(t, append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens}, proxyArgs...)...)
	return &vncBed{p: p, q: q, addr: addr, pki: dir,
		proxyArgs:  []string{"--proxy", "wss://" + p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, token)},
		directArgs: []string{"--target", addr, "--connect-tls-dir", dir},
		boot: func() *qemutest.SerialConsole {
			t.Helper()
			serial := g.Boot(t, q)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("QEMU alive %v, output: %s", q.Alive(), q.Output())
				}
			})
			return serial
		}}
}

// TestKeyboardVNC: QEMU with VeNCrypt x509 and client certificates, the
// proxy and "virtconsole vnc --local-port"; a scripted RFB viewer's
// KeyEvents reach the guest's shell, and its PointerEvents the guest's
// virtio tablet.
func TestKeyboardVNC(t *testing.T) {
	p, proxyArgs, boot := vncGuestBehindProxy(t, "kbd-vnc")
	v := startVNC(t, proxyArgs...)
	serial := boot()

	name, _, _, reason, c := rfbViewer(t, v.port)
	if reason != "" || name != "QEMU" {
		t.Fatalf("viewer: desktop %q, failure %q", name, reason)
	}
	// The viewer asks for no framebuffer updates; drain whatever else
	// QEMU sends (bell, cut text).
	go io.Copy(io.Discard, c)
	typeIntoGuest(t, serial, func(line string) error { return rfbType(c, line) })
	pointIntoGuest(t, serial, func(i int) error { return rfbPoint(c, uint16(100+10*(i%20)), 100) })
	waitFor(t, 10*time.Second, "the proxy's session start line", func() bool {
		return strings.Contains(p.log.String(), `msg="session start"`)
	})
}

// rfbType types s with RFB KeyEvents (RFC 6143 §7.5.4: u8 type 4, u8
// down-flag, u16 padding, u32 keysym, big-endian) as a viewer with a US
// keyboard sends them (keymap.Type): the keysym of the character, inside
// Shift_L down and up for a shifted one. QEMU maps each keysym to a key
// with its keymap (en-us) and ignores the shift the keysym implies, so
// the viewer has to hold Shift itself.
func rfbType(c net.Conn, s string) error {
	return keymap.Type(s, keyPause, func(k keymap.Key, down bool) error {
		m := []byte{4, 0, 0, 0}
		if down {
			m[1] = 1
		}
		_, err := c.Write(binary.BigEndian.AppendUint32(m, uint32(k.Keysym)))
		return err
	})
}

// TestKeyboardSPICE: QEMU SPICE on its TLS port, the proxy and
// "virtconsole spice --local-port"; spicetest's scripted viewer opens
// main, display and inputs channels, and its KEY_DOWN/KEY_UP scancodes
// reach the guest's shell; its mouse motions are acknowledged by QEMU's
// SPICE server and reach the guest's virtio mouse.
func TestKeyboardSPICE(t *testing.T) {
	g := qemutest.NewGraphicsGuest(t)
	b := newSPICEBed(t, qemutest.SPICEOptions{Args: g.Args}, map[string]string{"kbd-spice": ""})
	q := b.q
	v := b.client(t, "kbd-spice")
	serial := g.Boot(t, q)

	main, _ := scriptedSession(t, v.port, "")
	if !slices.Contains(main.Channels, spice.ChannelID{Type: spice.ChannelInputs}) {
		t.Fatalf("QEMU lists no inputs channel: %v", main.Channels)
	}
	inputs := openAt(t, v.port, spicetest.LinkOptions{ConnectionID: main.SessionID,
		Channel: spice.ChannelID{Type: spice.ChannelInputs}})
	waitFor(t, 10*time.Second, "SPICE_MSG_INPUTS_INIT", func() bool { return inputs.Received(spice.MsgInputsInit) == 1 })
	typeIntoGuest(t, serial, func(line string) error { return inputs.Type(line, keyPause) })

	// Mouse: spice-server acknowledges every fourth motion it handled.
	for range 8 {
		if err := inputs.MouseMotion(3, 2, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "two SPICE_MSG_INPUTS_MOUSE_MOTION_ACKs for 8 motions", func() bool {
		return inputs.Received(spice.MsgInputsMouseMotionAck) >= 2
	})
	// ... and reached the guest's virtio mouse.
	pointIntoGuest(t, serial, func(int) error { return inputs.MouseMotion(3, 2, 0) })

	// QEMU's account: the inputs channel is a TLS connection of the
	// session.
	var found bool
	for _, ch := range qemuChannels(t, q) {
		if ch.ChannelType == int(spice.ChannelInputs) {
			found = ch.TLS && uint32(ch.ConnectionID) == main.SessionID
		}
	}
	if !found {
		t.Errorf("QEMU has no TLS inputs channel of session %d: %+v", main.SessionID, qemuChannels(t, q))
	}
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
}

// TestRemoteViewerInput: the real remote-viewer under Xvfb, through
// "virtconsole spice|vnc --local-port" and the proxy (TLS on both legs;
// VeNCrypt x509 with a client certificate toward QEMU's VNC), with X
// input from xdotool: typed keys reach the guest's tty1 shell and mouse
// moves its virtio mouse or tablet, the way a user's do.
func TestRemoteViewerInput(t *testing.T) {
	for _, kind := range []string{"spice", "vnc"} {
		t.Run(kind, func(t *testing.T) { remoteViewerInput(t, kind) })
	}
}

func remoteViewerInput(t *testing.T, kind string) {
	bins := qemutest.Need(t, "xvfb-run", "remote-viewer", "xdotool")
	xdotool := bins[2]
	g := qemutest.NewGraphicsGuest(t)
	dir := pki(t)
	var q *qemutest.QEMU
	var addr, inputs string
	if kind == "spice" {
		q, _, addr = qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir, Args: g.Args})
		inputs = "channel=inputs:0" // its own websocket
	} else {
		q, addr = qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true, Args: g.Args})
		inputs = `msg="session start"` // one websocket carries all
	}
	tokens := writeTokens(t, map[string]resolver.Console{"rv-input": {Type: kind, Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	v := startGraphics(t, kind, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"),
		"--token-file", writeToken(t, "rv-input"))
	serial := g.Boot(t, q)
	x := startXvfb(t, bins[1], kind+"://127.0.0.1:"+strconv.Itoa(v.port))

	xdo := xdotoolOn(t, xdotool, x)
	win := viewerWindow(t, x, xdo, func() bool { return strings.Contains(p.log.String(), inputs) })
	xdoTypeIntoGuest(t, serial, xdo, win)
	// Mouse: moves and a click inside the window, as XTEST input.
	pointIntoGuest(t, serial, func(i int) error {
		if _, err := xdo("mousemove", "--window", win, strconv.Itoa(150+10*(i%20)), "150"); err != nil {
			return err
		}
		_, err := xdo("click", "1")
		return err
	})
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
}

// xdotoolOn returns a function running xdotool on x's display.
func xdotoolOn(t *testing.T, xdotool string, x *xvfbProc) func(args ...string) (string, error) {
	t.Helper()
	var display, xauth string
	waitFor(t, 30*time.Second, "Xvfb's display", func() bool {
		_, display, xauth = xvfbDisplay(x.displayFile)
		return display != ""
	})
	return func(args ...string) (string, error) {
		cmd := exec.Command(xdotool, args...)
		cmd.Env = env("DISPLAY="+display, "XAUTHORITY="+xauth)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("xdotool %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
}

// viewerWindow waits (60 s at most) for remote-viewer's window and for
// ready (e.g. its inputs channel in the proxy's log), and returns the
// window. There is no window manager: the test gives it the keyboard
// focus itself.
func viewerWindow(t *testing.T, x *xvfbProc, xdo func(args ...string) (string, error), ready func() bool) string {
	t.Helper()
	var win string
	waitFor(t, 60*time.Second, "remote-viewer's window and its input through the proxy", func() bool {
		select {
		case <-x.done:
			t.Fatalf("remote-viewer exited: %s", x.out.String())
		default:
		}
		out, err := xdo("search", "--onlyvisible", "--class", "remote-viewer")
		if err != nil || out == "" {
			return false
		}
		win = strings.Fields(out)[0]
		return ready()
	})
	return win
}

// xdoTypeIntoGuest types the keyboard line into window win with xdotool
// (typeIntoGuest): the viewer sends the keys' scancodes.
func xdoTypeIntoGuest(t *testing.T, serial *qemutest.SerialConsole, xdo func(args ...string) (string, error), win string) {
	t.Helper()
	serial.Wait(t, qemutest.GuestReady, 60*time.Second)
	typeIntoGuest(t, serial, func(line string) error {
		// Focus, as a window manager would give it. The pointer stays
		// where it is: the mouse check below wants the guest to have
		// seen no pointer event before it.
		if _, err := xdo("windowfocus", "--sync", win); err != nil {
			return err
		}
		for i, part := range strings.Split(line, "\n") {
			if i > 0 {
				if _, err := xdo("key", "Return"); err != nil {
					return err
				}
			}
			if part != "" {
				if _, err := xdo("type", "--delay", "30", part); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
