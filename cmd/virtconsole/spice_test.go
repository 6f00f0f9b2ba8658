package main

// End-to-end tests of SPICE through the proxy: real QEMU SPICE servers on
// their TLS ports (protocols/qemutest), the real remote-viewer under Xvfb,
// and spicetest's scripted viewer where a test needs to see link results
// (refusals) that a GUI viewer only shows in a dialog.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/spice/spicetest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// spiceBed is a QEMU with SPICE on a TLS port (its certificate from
// pki(t)) and "virtconsole server proxy" in front of it with a static
// token file.
type spiceBed struct {
	q       *qemutest.QEMU
	tlsAddr string
	ca      string
	p       *daemon
}

// startSPICEBed starts QEMU (with SPICE password qemuPassword, if set) and
// the proxy, whose token file maps each token in tokens to QEMU's TLS
// port with the given password for the proxy to supply. extra are more
// proxy flags.
func startSPICEBed(t *testing.T, qemuPassword string, tokens map[string]string, extra ...string) *spiceBed {
	t.Helper()
	return newSPICEBed(t, qemutest.SPICEOptions{Password: qemuPassword}, tokens, extra...)
}

// newSPICEBed is startSPICEBed with QEMU's SPICE options (o.TLSDir is
// set here): o.Args may boot a guest, paused (qemutest.GraphicsGuest).
func newSPICEBed(t *testing.T, o qemutest.SPICEOptions, tokens map[string]string, extra ...string) *spiceBed {
	t.Helper()
	qemutest.Require(t)
	dir := pki(t)
	o.TLSDir = dir
	q, _, tlsAddr := qemutest.StartSPICE(t, o)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU alive %v, output: %s", q.Alive(), q.Output())
		}
	})
	cons := map[string]resolver.Console{}
	for tok, pw := range tokens {
		cons[tok] = resolver.Console{Type: "spice", Address: tlsAddr, Password: pw}
	}
	args := append([]string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir,
		"--connect-tls-dir", dir, "--tokens", writeTokens(t, cons)}, extra...)
	return &spiceBed{q: q, tlsAddr: tlsAddr, ca: filepath.Join(dir, "ca-cert.pem"), p: startDaemon(t, args...)}
}

// args are the client flags that reach the console through the proxy
// with token.
func (b *spiceBed) args(t *testing.T, token string) []string {
	return []string{"--proxy", "wss://" + b.p.addr, "--ca-file", b.ca, "--token-file", writeToken(t, token)}
}

// client runs "virtconsole spice --local-port 0 --json" through the proxy
// with token.
func (b *spiceBed) client(t *testing.T, token string) *localGraphics {
	t.Helper()
	return startGraphics(t, "spice", b.args(t, token)...)
}

// spiceCtx bounds one scripted link stage or main-channel exchange.
func spiceCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// linkAt runs the scripted viewer's link stage on a new connection to the
// local port and returns it (Result holds a refusal).
func linkAt(t *testing.T, port int, o spicetest.LinkOptions) *spicetest.Client {
	t.Helper()
	c, err := spicetest.Link(spiceCtx(t), dialTCP(t, "127.0.0.1:"+strconv.Itoa(port)), o)
	if err != nil {
		t.Fatalf("scripted viewer, %v channel: %v", o.Channel, err)
	}
	return c
}

// openAt links a channel at the local port and keeps it going
// (spicetest.Open: on main, the session id and channel list are read).
func openAt(t *testing.T, port int, o spicetest.LinkOptions) *spicetest.Client {
	t.Helper()
	c, err := spicetest.Open(spiceCtx(t), dialTCP(t, "127.0.0.1:"+strconv.Itoa(port)), o)
	if err != nil {
		t.Fatalf("scripted viewer: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scriptedSession opens a main channel and the display channel at the
// local port, as a viewer does, and waits until the display channel gets
// messages from QEMU.
func scriptedSession(t *testing.T, port int, ticket string) (main, display *spicetest.Client) {
	t.Helper()
	main = openAt(t, port, spicetest.LinkOptions{Ticket: ticket})
	if main.SessionID == 0 || !slices.Contains(main.Channels, spice.ChannelID{Type: spice.ChannelDisplay}) {
		t.Fatalf("session id %d, channels %v", main.SessionID, main.Channels)
	}
	display = openAt(t, port, spicetest.LinkOptions{ConnectionID: main.SessionID,
		Channel: spice.ChannelID{Type: spice.ChannelDisplay}, Ticket: ticket})
	waitFor(t, 30*time.Second, "messages on the display channel", func() bool { return display.Total() > 0 })
	return main, display
}

// qemuChannel is one SPICE channel QEMU has connected (QMP query-spice).
type qemuChannel struct {
	ConnectionID int64 `json:"connection-id"` // QMP prints it as a signed int32
	ChannelType  int   `json:"channel-type"`
	ChannelID    int   `json:"channel-id"`
	TLS          bool  `json:"tls"`
}

func qemuChannels(t *testing.T, q *qemutest.QEMU) []qemuChannel {
	t.Helper()
	raw, err := q.QMP("query-spice", nil)
	if err != nil {
		t.Fatal(err)
	}
	var info struct{ Channels []qemuChannel }
	if err := json.Unmarshal(raw, &info); err != nil {
		t.Fatalf("query-spice: %v: %s", err, raw)
	}
	return info.Channels
}

var (
	sessionAttrRE = regexp.MustCompile(` session=(\S+)`)
	channelAttrRE = regexp.MustCompile(` channel=(\S+)`)
	consoleAttrRE = regexp.MustCompile(` console=(\S+)`)
)

// spiceLogLine is a proxy log line's session, channel and console.
type spiceLogLine struct{ session, channel, console string }

// logLines returns the proxy's lines with msg="MSG".
func logLines(log, msg string) []spiceLogLine {
	var out []spiceLogLine
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="`+msg+`"`) {
			continue
		}
		var s spiceLogLine
		if m := sessionAttrRE.FindStringSubmatch(l); m != nil {
			s.session = m[1]
		}
		if m := channelAttrRE.FindStringSubmatch(l); m != nil {
			s.channel = m[1]
		}
		if m := consoleAttrRE.FindStringSubmatch(l); m != nil {
			s.console = m[1]
		}
		out = append(out, s)
	}
	return out
}

// sessionChannels returns the channels of the proxy's "session start"
// lines by session.
func sessionChannels(log string) map[string][]string {
	m := map[string][]string{}
	for _, l := range logLines(log, "session start") {
		m[l.session] = append(m[l.session], l.channel)
	}
	return m
}

// TestSPICERemoteViewer: the real remote-viewer, under Xvfb, opens a
// session through "virtconsole spice --local-port" and the proxy. Every
// channel (at least main, display, inputs, cursor) is its own websocket,
// the proxy logs them all under one session, and QEMU sees each channel
// on its TLS port with the session's connection id.
func TestSPICERemoteViewer(t *testing.T) {
	bins := qemutest.Need(t, "xvfb-run", "remote-viewer")
	start := time.Now()
	const token = "remote-viewer-token-1"
	b := startSPICEBed(t, "", map[string]string{token: ""})
	v := b.client(t, token)

	x := startXvfb(t, bins[1], "spice://127.0.0.1:"+strconv.Itoa(v.port))
	displayFile := x.displayFile

	// The session: the proxy reports the main channel's session id and
	// channel list, and every channel's websocket.
	session := viewerSession(t, x, b.p, "")
	t.Logf("remote-viewer's channels through the proxy after %v", time.Since(start).Round(time.Millisecond))
	log := b.p.log.String()
	starts := logLines(log, "session start")
	for _, l := range starts {
		if l.session != session {
			t.Errorf("a websocket of another session %q (channel %s); want every channel under %s:\n%s", l.session, l.channel, session, log)
		}
		if l.console != b.tlsAddr {
			t.Errorf("channel %s went to %s, not QEMU's TLS port %s", l.channel, l.console, b.tlsAddr)
		}
	}
	spiceLines := logLines(log, "spice session")
	if len(spiceLines) != 1 || spiceLines[0].session != session {
		t.Fatalf("want one \"spice session\" line for session %s:\n%s", session, log)
	}
	idm := regexp.MustCompile(`msg="spice session".* spice_session_id=(\d+)`).FindStringSubmatch(log)
	if idm == nil {
		t.Fatalf("no spice_session_id in the proxy log:\n%s", log)
	}
	id, _ := strconv.Atoi(idm[1])
	if !regexp.MustCompile(`msg="spice session".* channels="?\[[^]]*display:0[^]]*\]`).MatchString(log) {
		t.Errorf("the spice session line lacks the channel list:\n%s", log)
	}

	// QEMU's own view: each of those channels is a TLS connection of
	// session id.
	var chans []qemuChannel
	waitFor(t, 10*time.Second, "QEMU to list the channels", func() bool {
		chans = qemuChannels(t, b.q)
		return len(chans) >= len(starts)
	})
	for _, c := range chans {
		if !c.TLS || uint32(c.ConnectionID) != uint32(id) {
			t.Errorf("QEMU has channel %+v; want TLS and connection id %d", c, id)
		}
	}
	t.Logf("session %s (SPICE session id %d): %d channels through the proxy %v; QEMU: %+v",
		session, id, len(starts), sessionChannels(log)[session], chans)

	screenshot(t, displayFile)
	if !b.q.Alive() {
		t.Fatal("QEMU died")
	}
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// viewerSessionChannels are the channels remote-viewer opens at least.
var viewerSessionChannels = []string{"main:0", "display:0", "inputs:0", "cursor:0"}

// viewerSession waits (60 s at most) until the proxy p has logged a
// session other than not with every one of viewerSessionChannels, all
// opened by the viewer x, and returns it.
func viewerSession(t *testing.T, x *xvfbProc, p *daemon, not string) string {
	t.Helper()
	var session string
	waitFor(t, 60*time.Second, "main, display, inputs and cursor through the proxy", func() bool {
		select {
		case <-x.done:
			t.Fatalf("remote-viewer exited: %s", x.out.String())
		default:
		}
		for s, chans := range sessionChannels(p.log.String()) {
			if s != not && containsAll(chans, viewerSessionChannels) {
				session = s
				return true
			}
		}
		return false
	})
	return session
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// xvfbProc is a program running under xvfb-run in its own process group.
type xvfbProc struct {
	cmd         *exec.Cmd
	displayFile string // the shell's PID, $DISPLAY and $XAUTHORITY
	out         *syncBuffer
	done        chan struct{}
}

// startXvfb runs argv under xvfb-run: a free display, 1024x768, and
// -noreset (by default Xvfb resets when its last client leaves, and a
// client connecting meanwhile, such as the viewer right after a test's
// xdotool call, "cannot open display"). The shell it starts records its
// PID (argv[0]'s, once it execs), the display and its XAUTHORITY, for
// screenshots. Cleanup ends it and Xvfb; Xvfb's errors are logged when the
// test fails.
func startXvfb(t *testing.T, argv ...string) *xvfbProc {
	t.Helper()
	bin := qemutest.Need(t, "xvfb-run")[0]
	tmp := t.TempDir()
	x := &xvfbProc{displayFile: filepath.Join(tmp, "display"), out: &syncBuffer{}, done: make(chan struct{})}
	xvfbErr := filepath.Join(tmp, "xvfb.log")
	x.cmd = exec.Command(bin, append([]string{"-a", "-e", xvfbErr, "-s", "-screen 0 1024x768x24 -noreset", "sh", "-c",
		`echo "$$ $DISPLAY $XAUTHORITY" > "$0.tmp" && mv "$0.tmp" "$0" && shift && exec "$@"`,
		x.displayFile, "--"}, argv...)...)
	x.cmd.Stdout, x.cmd.Stderr = x.out, x.out
	x.cmd.Env = env("HOME="+tmp, "XDG_RUNTIME_DIR="+tmp, "XDG_CONFIG_HOME="+tmp, "NO_AT_BRIDGE=1", "GDK_BACKEND=x11")
	// Its own process group, to kill xvfb-run, Xvfb and the program
	// together if need be.
	x.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := x.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { x.cmd.Wait(); close(x.done) }()
	t.Cleanup(func() {
		// Ending the program makes xvfb-run stop Xvfb and remove its
		// files; the whole group is killed if that does not happen.
		if pid, _, _ := xvfbDisplay(x.displayFile); pid > 0 {
			syscall.Kill(pid, syscall.SIGTERM)
		} else {
			syscall.Kill(-x.cmd.Process.Pid, syscall.SIGTERM)
		}
		select {
		case <-x.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-x.cmd.Process.Pid, syscall.SIGKILL)
			<-x.done
		}
		// xvfb-run signals Xvfb but does not wait for it: wait until
		// nothing of the group (Xvfb, a viewer the program started) is
		// left, so that no X server outlives its test.
		pgid := x.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		for end := time.Now().Add(10 * time.Second); syscall.Kill(-pgid, 0) == nil; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				syscall.Kill(-pgid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			xerr, _ := os.ReadFile(xvfbErr)
			t.Logf("output under xvfb-run:\n%s\nXvfb's:\n%s", x.out.String(), xerr)
		}
	})
	return x
}

// xvfbDisplay reads what the shell under xvfb-run wrote: its PID (then
// remote-viewer's), the X display and its XAUTHORITY file.
func xvfbDisplay(file string) (pid int, display, xauth string) {
	b, err := os.ReadFile(file)
	f := strings.Fields(string(b))
	if err != nil || len(f) != 3 {
		return 0, "", ""
	}
	pid, _ = strconv.Atoi(f[0])
	return pid, f[1], f[2]
}

// screenshot saves the X screen named in displayFile as a PNG with
// ImageMagick's import, when it is installed (it is optional: the test
// stands on the proxy's and QEMU's accounts), and waits until it shows
// the guest's VGA text (SeaBIOS's messages, grey #A8A8A8 on black) in
// remote-viewer's window. The file stays in the test's temporary
// directory, and is copied to $VIRTCONSOLE_SPICE_SCREENSHOT if set.
func screenshot(t *testing.T, displayFile string) {
	t.Helper()
	imp, err := exec.LookPath("import")
	if err != nil {
		t.Log("no screenshot: ImageMagick's import is not installed")
		return
	}
	_, display, xauth := xvfbDisplay(displayFile)
	if display == "" {
		t.Fatalf("xvfb-run's display is not in %s", displayFile)
	}
	out := filepath.Join(t.TempDir(), "remote-viewer.png")
	var text int
	var last string
	shows := func() bool {
		cmd := exec.Command(imp, "-display", display, "-window", "root", "png:"+out)
		cmd.Env = env("XAUTHORITY=" + xauth)
		if o, err := cmd.CombinedOutput(); err != nil {
			last = strings.TrimSpace(string(o))
			return false
		}
		data, err := os.ReadFile(out)
		if err != nil {
			last = err.Error()
			return false
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			last = err.Error()
			return false
		}
		text = 0
		r := img.Bounds()
		for y := r.Min.Y; y < r.Max.Y; y++ {
			for x := r.Min.X; x < r.Max.X; x++ {
				if c, g, b, _ := img.At(x, y).RGBA(); c>>8 == 0xa8 && g>>8 == 0xa8 && b>>8 == 0xa8 {
					text++
				}
			}
		}
		last = fmt.Sprintf("%d pixels of VGA text in %s", text, out)
		return text > 1000
	}
	if !waitForOr(30*time.Second, shows) {
		t.Fatalf("remote-viewer does not show the guest's text: %s", last)
	}
	t.Logf("screenshot %s: %d pixels of the guest's VGA text", out, text)
	if dst := os.Getenv("VIRTCONSOLE_SPICE_SCREENSHOT"); dst != "" {
		if data, err := os.ReadFile(out); err == nil {
			os.WriteFile(dst, data, 0o644)
		}
	}
}

// TestSPICEReplay: while a session is live, a second main channel with
// its token is refused by the proxy (the viewer gets a link error; it
// never reaches QEMU, which keeps running), as is a secondary channel
// with a wrong connection id; the session's own channels still join.
func TestSPICEReplay(t *testing.T) {
	const token = "replay-token-1"
	b := startSPICEBed(t, "", map[string]string{token: ""})
	v := b.client(t, token)
	main, _ := scriptedSession(t, v.port, "")

	takeover := linkAt(t, v.port, spicetest.LinkOptions{})
	if takeover.Result != spice.LinkErrPermissionDenied {
		t.Errorf("second main channel with the live session's token: link result %v, want permission denied", takeover.Result)
	}
	wrongID := linkAt(t, v.port, spicetest.LinkOptions{ConnectionID: main.SessionID + 1,
		Channel: spice.ChannelID{Type: spice.ChannelInputs}})
	if wrongID.Result != spice.LinkErrBadConnectionID {
		t.Errorf("inputs channel with a wrong connection id: link result %v, want bad connection id", wrongID.Result)
	}
	waitFor(t, 10*time.Second, "the proxy's log of both refusals", func() bool {
		l := b.p.log.String()
		return strings.Contains(l, "a second main channel would take it over") && strings.Contains(l, "is not the session's")
	})
	if !b.q.Alive() {
		t.Fatalf("QEMU died after the takeover attempt: %s", b.q.Output())
	}
	// Neither refused link reached QEMU: it has the session's main and
	// display channels only.
	if chans := qemuChannels(t, b.q); len(chans) != 2 {
		t.Errorf("QEMU has %d channels, want main and display: %+v", len(chans), chans)
	}
	// The live session goes on: its inputs channel joins, its main
	// channel still answers.
	openAt(t, v.port, spicetest.LinkOptions{ConnectionID: main.SessionID, Channel: spice.ChannelID{Type: spice.ChannelInputs}})
	if err := main.WriteMessage(spice.MsgcMainAttachChannels, nil); err != nil {
		t.Fatal(err)
	}
	n := main.Received(spice.MsgMainChannelsList)
	waitFor(t, 10*time.Second, "QEMU's answer on the live main channel", func() bool {
		return main.Received(spice.MsgMainChannelsList) > n
	})
	if got := sessionChannels(b.p.log.String()); len(got) != 1 {
		t.Errorf("proxy sessions %v, want one", got)
	}
}

// TestSPICESingleUseStatic: with "server proxy --single-use", a token
// opens one session; its channels join it while it is live, and once it
// has ended the token is refused (HTTP 404 from the proxy, a link error
// for the viewer).
func TestSPICESingleUseStatic(t *testing.T) {
	const token = "single-use-token-1"
	b := startSPICEBed(t, "", map[string]string{token: ""}, "--single-use")
	v := b.client(t, token)
	main, display := scriptedSession(t, v.port, "")
	// While the session is live, its channels join with the token.
	inputs := openAt(t, v.port, spicetest.LinkOptions{ConnectionID: main.SessionID, Channel: spice.ChannelID{Type: spice.ChannelInputs}})
	ends := strings.Count(b.p.log.String(), `msg="session end"`)
	main.Close()
	display.Close()
	inputs.Close()
	waitFor(t, 20*time.Second, "the session's end", func() bool {
		return strings.Count(b.p.log.String(), `msg="session end"`) >= ends+3
	})

	again := linkAt(t, v.port, spicetest.LinkOptions{})
	if again.Result != spice.LinkErrPermissionDenied {
		t.Errorf("the spent token's new session: link result %v, want permission denied", again.Result)
	}
	waitFor(t, 10*time.Second, "the client's report of the proxy's 404", func() bool {
		return strings.Contains(v.errb.String(), "HTTP 404")
	})
	if n := len(qemuChannels(t, b.q)); n != 0 {
		t.Errorf("QEMU has %d channels after the spent token's attempt", n)
	}
}

// TestSPICEPassword: QEMU has a SPICE password. With the right password
// in the token file the scripted viewer, sending a ticket with a wrong
// password, opens a session (main and display: the proxy takes the
// ticket step over on each); with a wrong one it gets a clear
// link error (permission denied) and the proxy logs why. Neither password
// appears in a log.
func TestSPICEPassword(t *testing.T) {
	const right, wrong = "spice-pw-right-1", "spice-pw-wrong-1"
	b := startSPICEBed(t, right, map[string]string{"pw-right": right, "pw-wrong": wrong})
	good := b.client(t, "pw-right")
	bad := b.client(t, "pw-wrong")

	main, display := scriptedSession(t, good.port, "not-the-password")
	if !strings.Contains(b.p.log.String(), "auth="+spice.AuthTicketTakeover) {
		t.Errorf("no ticket takeover in the proxy log:\n%s", b.p.log.String())
	}

	// One SPICE viewer per console at a time (a second gets 409): the
	// first session ends before the next link.
	main.Close()
	display.Close()
	waitFor(t, 10*time.Second, "the first session's end", func() bool {
		log := b.p.log.String()
		return strings.Count(log, "msg=\"session end\"") >= strings.Count(log, "msg=\"session start\"")
	})
	c := linkAt(t, bad.port, spicetest.LinkOptions{Ticket: right})
	if c.Result != spice.LinkErrPermissionDenied {
		t.Fatalf("wrong password in the token file: link result %v, want permission denied", c.Result)
	}
	waitFor(t, 10*time.Second, "the proxy's log of QEMU's refusal", func() bool {
		return strings.Contains(b.p.log.String(), "permission denied; check the SPICE password the resolver gives")
	})
	for _, l := range []string{b.p.log.String(), good.errb.String(), bad.errb.String()} {
		if strings.Contains(l, right) || strings.Contains(l, wrong) {
			t.Fatalf("a SPICE password was logged:\n%s", l)
		}
	}
	if !b.q.Alive() {
		t.Fatal("QEMU died")
	}
}

// TestSPICELibvirtSingleUse: with the libvirt resolver ("virtconsole
// server --connect"), SPICE tokens are single-use: a token read with
// "consoles --show-tokens" opens one session, after which the proxy no
// longer knows it (HTTP 404) and libvirt holds a fresh one; "virtconsole
// spice DOMAIN" reads a fresh token per session, so sessions in a row
// work.
func TestSPICELibvirtSingleUse(t *testing.T) {
	d := libvirttest.Start(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{SPICE: true})
	// libvirttest turns on spice_tls: the proxy uses the TLS port.
	if r := run(t, nil, "enable", dom.Name, "--type", "spice"); r.code != 0 {
		t.Fatalf("enable: exit %d: %s", r.code, r.stderr)
	}
	dir := pki(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	srv := startDaemon(t, "server", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", libvirttest.TLSDir,
		"--connect", "qemu:///system")

	tok := tokenOf(t, dom.Name, "spice")
	v := startGraphics(t, "spice", "--proxy", "wss://"+srv.addr, "--ca-file", ca, "--token-file", writeToken(t, tok))
	main, display := scriptedSession(t, v.port, "")
	ends := strings.Count(srv.log.String(), `msg="session end"`)
	main.Close()
	display.Close()
	waitFor(t, 20*time.Second, "the session's end", func() bool {
		return strings.Count(srv.log.String(), `msg="session end"`) >= ends+2
	})
	if _, tlsPort := dom.SPICEPorts(t); tlsPort == 0 || !strings.Contains(srv.log.String(), "console=127.0.0.1:"+strconv.Itoa(tlsPort)) {
		t.Errorf("the session did not use SPICE's TLS port %d:\n%s", tlsPort, srv.log.String())
	}
	fresh := tokenOf(t, dom.Name, "spice")
	if fresh == tok {
		t.Fatal("the token is unchanged in libvirt after its session")
	}
	again := linkAt(t, v.port, spicetest.LinkOptions{})
	if again.Result != spice.LinkErrPermissionDenied {
		t.Errorf("the used token's new session: link result %v, want permission denied", again.Result)
	}
	waitFor(t, 10*time.Second, "the client's report of the proxy's 404", func() bool {
		return strings.Contains(v.errb.String(), "HTTP 404")
	})

	// virtconsole spice DOMAIN: a fresh token from libvirt per session.
	vd := startGraphics(t, "spice", dom.Name, "--proxy", "wss://"+srv.addr, "--ca-file", ca)
	for i := range 2 {
		main, display := scriptedSession(t, vd.port, "")
		ends := strings.Count(srv.log.String(), `msg="session end"`)
		main.Close()
		display.Close()
		waitFor(t, 20*time.Second, "session "+strconv.Itoa(i+1)+"'s end", func() bool {
			return strings.Count(srv.log.String(), `msg="session end"`) >= ends+2
		})
	}
	// Three sessions, each under its own token's fingerprint: the two
	// through DOMAIN had fresh tokens.
	if got := len(sessionChannels(srv.log.String())); got != 3 {
		t.Errorf("proxy sessions %d, want 3:\n%s", got, srv.log.String())
	}
	if strings.Contains(srv.log.String(), tok) || strings.Contains(srv.log.String(), fresh) {
		t.Error("the server logged a token")
	}
}
