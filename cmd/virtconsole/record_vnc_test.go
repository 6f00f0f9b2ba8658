package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/keymap"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
	"github.com/virtconsole/virtconsole/tunnel/record"
)

// recordVNCPassword is QEMU's VNC password in TestRecordVNC: the proxy
// supplies it, and no recording may hold it.
const recordVNCPassword = "vncpw-7e1f"

// settle reads the viewer's updates until none has come for quiet and
// returns a copy of its screen.
func settle(t *testing.T, v *vncclient.Client, quiet time.Duration) *image.RGBA {
	t.Helper()
	for {
		err := v.Next(time.Now().Add(quiet))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("the viewer: %v", err)
		}
	}
	img := v.Image()
	return &image.RGBA{Pix: append([]byte(nil), img.Pix...), Stride: img.Stride, Rect: img.Rect}
}

// scriptedViewer connects a viewer asking for o to the local port,
// with a deadline d from now, and captures the screen once; it is
// closed when the test ends.
func scriptedViewer(t *testing.T, port int, o vncclient.Options, d time.Duration) *vncclient.Client {
	t.Helper()
	vc, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	viewer, err := vncclient.Handshake(ctx, vc, o)
	if err != nil {
		vc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { viewer.Close() })
	viewer.SetDeadline(time.Now().Add(d))
	if err := viewer.Capture(); err != nil {
		t.Fatal(err)
	}
	return viewer
}

// exportAt runs "recordings export FILE --at T -o PNG" and returns the
// image.
func exportAt(t *testing.T, file string, at time.Duration) *image.RGBA {
	t.Helper()
	out := filepath.Join(t.TempDir(), "at.png")
	r := run(t, nil, "recordings", "export", file, "--at", fmt.Sprintf("%.3fs", at.Seconds()), "-o", out)
	if r.code != 0 {
		t.Fatalf("export --at %v: exit %d: %s", at, r.code, r.stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img.(*image.RGBA)
}

// viewerMessages reads a VNC recording's header and viewer stream: the
// encodings of each SetEncodings, and how many input messages it holds.
func viewerMessages(t *testing.T, file string) (encodings [][]int32, inputs int, header record.RFBHeader) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := record.NewRFBReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var c []byte
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Dir == record.RecordClient {
			c = append(c, rec.Data...)
		}
	}
	c = c[1:] // ClientInit
	for len(c) > 0 {
		size, isInput, err := vnc.ClientMessageSize(c)
		if err != nil || size == 0 || size > len(c) {
			t.Fatalf("the recorded viewer stream does not parse at % x: %v", c[:min(16, len(c))], err)
		}
		if isInput {
			inputs++
		}
		if vnc.ClientMessageType(c[0]) == vnc.MsgSetEncodings {
			var encs []int32
			for i := 4; i < size; i += 4 {
				encs = append(encs, int32(binary.BigEndian.Uint32(c[i:])))
			}
			encodings = append(encodings, encs)
		}
		c = c[size:]
	}
	return encodings, inputs, rd.Header
}

// ffprobeDuration is the duration ffprobe reports of a video.
func ffprobeDuration(t *testing.T, file string) float64 {
	t.Helper()
	out, err := exec.Command(qemutest.Need(t, "ffprobe")[0], "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", file, err, out)
	}
	d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatalf("ffprobe: %q", out)
	}
	return d
}

// TestRecordVNC: a VNC session through "server proxy" (TLS both legs, a
// VNC password the proxy supplies) with --record-dir and --record-key,
// by a scripted viewer asking for Tight, ZRLE and Raw while the guest's
// screen changes (written to /dev/tty1 from the serial shell, the guest
// paused while it is compared): QEMU gets ZRLE and Raw and no Tight, and
// sends ZRLE; "recordings export --at T" gives the screen the viewer had
// at T, pixel for pixel, and vncsnapshot's (Raw, directly from QEMU)
// within JPEG's tolerance; the mp4 export lasts the session (ffprobe);
// the viewer's key events are not recorded; verify passes, and fails
// after a flipped byte; no token or password is in any file. Then a
// second session cut by kill -9 of the proxy verifies as incomplete and
// still exports up to the cut.
func TestRecordVNC(t *testing.T) {
	qemutest.Need(t, "vncsnapshot", "ffmpeg", "ffprobe")
	key, pub := recordingKey(t)
	dir := filepath.Join(t.TempDir(), "recordings")
	b := startVNCBedPassword(t, recordToken, recordVNCPassword, "--record-dir", dir, "--record-key", key)
	serial := b.boot()
	serial.Wait(t, qemutest.GuestReady, 60*time.Second)
	pw := filepath.Join(t.TempDir(), "vncpass")
	if err := os.WriteFile(pw, []byte(recordVNCPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	direct := startVNC(t, append(b.directArgs, "--password-file", pw)...) // vncsnapshot's way to QEMU: not recorded
	screen := func(colour int, text string) {
		t.Helper()
		// Clear tty1, write text in colour, wait for the VGA console to
		// show it, then pause the guest: a still screen, cursor too.
		if _, err := b.q.QMP("cont", nil); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(serial.Conn, "printf '\\033[2J\\033[H\\033[1;%dm%s\\033[0m\\n' > /dev/tty1; echo drawn-%s\n", colour, text, text)
		serial.Wait(t, "drawn-"+text, 30*time.Second)
		time.Sleep(time.Second)
		if _, err := b.q.QMP("stop", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	screen(32, "BEFORE")

	v := startVNC(t, b.proxyArgs...)
	began := time.Now()
	viewer := scriptedViewer(t, v.port, vncclient.Options{Encodings: []vncclient.Encoding{
		vncclient.EncodingTight, vncclient.EncodingZRLE, vncclient.EncodingRaw, vncclient.EncodingDesktopSize}}, 3*time.Minute)
	// Keys the recording must leave out (Shift types nothing).
	shift := keymap.Key{Keysym: keymap.XKShiftL, Qnum: keymap.QnumLeftShift}
	if err := viewer.KeyEvent(shift, true); err != nil {
		t.Fatal(err)
	}
	viewer.KeyEvent(shift, false)

	type moment struct {
		at   time.Duration
		seen *image.RGBA
		ref  image.Image
	}
	var moments []moment
	for i, s := range []struct {
		colour int
		text   string
	}{{31, "RECORDED-RED"}, {34, "RECORDED-BLUE"}} {
		screen(s.colour, s.text)
		seen := settle(t, viewer, 700*time.Millisecond)
		at := time.Since(began)
		ref := snapshot(t, direct.port, "-quiet", "-nocursor", "-encodings", "raw", "-nojpeg", "-quality", "100")
		moments = append(moments, moment{at, seen, ref})
		t.Logf("screen %d seen at %v", i, at.Round(time.Millisecond))
		time.Sleep(time.Second) // still paused: the screen stays
	}
	if _, err := b.q.QMP("cont", nil); err != nil {
		t.Fatal(err)
	}
	rects := viewer.Rects()
	viewer.Close()
	if rects[vncclient.EncodingZRLE] == 0 || rects[vncclient.EncodingTight] != 0 {
		t.Errorf("the viewer got rectangles %v; want ZRLE (steered from Tight)", rects)
	}

	rfb := waitRecordingExt(t, dir, ".rfb", true)
	encs, inputs, header := viewerMessages(t, rfb)
	if header.Width != 720 || header.Height != 400 || header.Name != "QEMU" || header.PixelFormat == nil || header.Virtconsole.TokenID == "" {
		t.Errorf("the recording's header has no ServerInit (720x400, QEMU) or identity: %+v", header)
	}
	if len(encs) != 1 || !slices.Equal(encs[0], []int32{16, 0, -223}) || inputs != 0 {
		t.Errorf("the recording has SetEncodings %v and %d input messages; want [16 0 -223] (Tight removed) and none", encs, inputs)
	}
	red, _ := redBlue(moments[0].seen)
	_, blue := redBlue(moments[1].seen)
	if red < 200 || blue < 200 {
		t.Fatalf("%d red, %d blue pixels: the screens were not drawn", red, blue)
	}
	for i, m := range moments {
		// A moment 0.4 s after the viewer saw the screen: still paused.
		got := exportAt(t, rfb, m.at+400*time.Millisecond)
		if _, over := pixelDiff(t, got, m.seen, 0); over != 0 {
			t.Errorf("screen %d: the export at %v differs from the viewer's screen in %d pixels", i, m.at, over)
		}
		maxDiff, over := pixelDiff(t, got, m.ref, jpegTolerance)
		t.Logf("screen %d: export vs vncsnapshot (JPEG q100): largest channel difference %d, %d pixels over %d", i, maxDiff, over, jpegTolerance)
		if over > 0 {
			t.Errorf("screen %d: %d pixels differ from vncsnapshot's by more than %d", i, over, jpegTolerance)
		}
	}
	if _, over := pixelDiff(t, moments[0].seen, moments[1].seen, jpegTolerance); over == 0 {
		t.Fatal("the two screens are the same: the comparison cannot fail")
	}

	// The video: as long as the session, within two frames at 10 fps.
	var m record.Manifest
	mb, _ := os.ReadFile(rfb + record.ManifestSuffix)
	if err := json.Unmarshal(mb, &m); err != nil {
		t.Fatal(err)
	}
	// The README's export lines (its second Recording block), on this
	// recording: a PNG at 2 s, and the mp4.
	work := t.TempDir()
	shot, mp4 := filepath.Join(work, "shot.png"), filepath.Join(work, "session.mp4")
	readme := readmeSubsection(t, "Recording")[6:]
	for _, line := range readme {
		f := strings.Fields(strings.NewReplacer("./recordings/20261201T100000Z-vnc-9c0e1d2b3a4f5e6d.rfb", rfb,
			"shot.png", shot, "session.mp4", mp4).Replace(line))
		if f[0] != "virtconsole" || f[1] != "recordings" || f[2] != "export" {
			t.Fatalf("README line %q is not recordings export", line)
		}
		start := time.Now()
		r := run(t, nil, f[1:]...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d: %s", line, r.code, r.stderr)
		}
		t.Logf("%s: %v: %s", line, time.Since(start).Round(time.Millisecond), strings.TrimSpace(r.stdout))
	}
	if f, err := os.Open(shot); err != nil {
		t.Fatal(err)
	} else if img, err := png.Decode(f); err != nil || img.Bounds().Dx() != 720 || img.Bounds().Dy() != 400 {
		t.Fatalf("the README's --at 2s PNG: %v, %v", err, img.Bounds())
	}
	session, video := m.End.Sub(m.Start).Seconds(), ffprobeDuration(t, mp4)
	t.Logf("ffprobe %.2fs, session %.2fs", video, session)
	if d := video - session; d < -0.2 || d > 0.2 {
		t.Errorf("the video lasts %.2fs, the session %.2fs", video, session)
	}
	// --json describes what was written.
	r := run(t, nil, "recordings", "export", rfb, "--fps", "1", "-o", filepath.Join(work, "frames")+"/", "--json")
	var res struct {
		Kind   string  `json:"kind"`
		Frames int     `json:"frames"`
		Secs   float64 `json:"duration_seconds"`
		Width  int     `json:"width"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); r.code != 0 || err != nil || res.Kind != "frames" || res.Width != 720 ||
		res.Frames < int(session) || res.Frames > int(session)+2 {
		t.Errorf("export --json: exit %d, %q, %v: %+v", r.code, r.stdout, err, res)
	}

	r = run(t, nil, "recordings", "verify", rfb, "--key", pub)
	if r.code != 0 || !strings.Contains(r.stdout, "verified") {
		t.Fatalf("verify: exit %d: %q %q", r.code, r.stdout, r.stderr)
	}
	data, _ := os.ReadFile(rfb)
	data[len(data)/2] ^= 1
	os.WriteFile(rfb, data, 0o600)
	r = run(t, nil, "recordings", "verify", rfb, "--key", pub)
	if r.code != cmdutil.ExitInvalid {
		t.Fatalf("verify after a flipped byte: exit %d, want %d", r.code, cmdutil.ExitInvalid)
	}
	checkOneLine(t, r.stderr, "verification failed")
	os.Rename(rfb, rfb+".flipped")
	noSecret(t, dir, recordVNCPassword)
	noToken(t, dir)

	// A second session, cut by kill -9.
	viewer2 := scriptedViewer(t, v.port, vncclient.Options{Encodings: []vncclient.Encoding{vncclient.EncodingZRLE}}, time.Minute)
	screen(35, "BEFORE-THE-CUT")
	cut := settle(t, viewer2, 700*time.Millisecond)
	rfb2 := waitRecordingExt(t, dir, ".rfb", false)
	time.Sleep(2 * time.Second) // flushed within a second
	b.p.cmd.Process.Signal(syscall.SIGKILL)
	<-b.p.done
	r = run(t, nil, "recordings", "verify", rfb2, "--key", pub)
	if r.code != cmdutil.ExitIncomplete {
		t.Fatalf("verify of a cut recording: exit %d, want %d; %q", r.code, cmdutil.ExitIncomplete, r.stderr)
	}
	frames := filepath.Join(t.TempDir(), "frames") + "/"
	r = run(t, nil, "recordings", "export", rfb2, "--fps", "2", "-o", frames)
	last, _ := filepath.Glob(filepath.Join(frames, "frame-*.png"))
	if r.code != 0 || len(last) == 0 {
		t.Fatalf("export of the cut recording: exit %d, %d frames: %s", r.code, len(last), r.stderr)
	}
	f, _ := os.Open(last[len(last)-1])
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, over := pixelDiff(t, img.(*image.RGBA), cut, 0); over != 0 {
		t.Errorf("the cut recording's last frame differs from the viewer's screen in %d pixels", over)
	}
	noSecret(t, dir, recordVNCPassword)
	noToken(t, dir)
}

// TestRecordSPICEMetadata: a SPICE session through "server proxy" with
// --record-dir leaves metadata only: one .jsonl per channel (main,
// display), each with its channel and the bytes each way, with a signed
// manifest that verifies; nothing else is recorded, and neither the token
// nor QEMU's SPICE password is in any file.
func TestRecordSPICEMetadata(t *testing.T) {
	const password = "spice-pw-5b8e0c"
	key, pub := recordingKey(t)
	dir := filepath.Join(t.TempDir(), "recordings")
	b := startSPICEBed(t, password, map[string]string{recordToken: password}, "--record-dir", dir, "--record-key", key)
	v := b.client(t, recordToken)
	main, display := scriptedSession(t, v.port, "")
	display.Close()
	main.Close()
	var files []string
	waitFor(t, 30*time.Second, "a manifest per channel", func() bool {
		files, _ = filepath.Glob(filepath.Join(dir, "*.jsonl"))
		m, _ := filepath.Glob(filepath.Join(dir, "*.jsonl"+record.ManifestSuffix))
		return len(files) >= 2 && len(m) == len(files)
	})
	if all, _ := filepath.Glob(filepath.Join(dir, "*")); len(all) != 2*len(files) {
		t.Fatalf("the recordings directory holds %v; want metadata and manifests only", all)
	}
	var channels []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var end record.SessionEnd
		if len(lines) != 2 || !strings.Contains(lines[0], `"format":"virtconsole-metadata"`) || json.Unmarshal([]byte(lines[1]), &end) != nil ||
			end.BytesFromConsole == 0 || end.BytesToConsole == 0 {
			t.Fatalf("%s:\n%s", f, b)
		}
		channels = append(channels, end.Channel)
		if r := run(t, nil, "recordings", "verify", f, "--key", pub); r.code != 0 {
			t.Fatalf("verify %s: exit %d: %s", f, r.code, r.stderr)
		}
	}
	slices.Sort(channels)
	if !slices.Contains(channels, "main:0") || !slices.Contains(channels, "display:0") {
		t.Errorf("channels %v; want main:0 and display:0", channels)
	}
	noToken(t, dir)
	noSecret(t, dir, password)
}
