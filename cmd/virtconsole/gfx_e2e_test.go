package main

// Scripted graphical consoles end to end (issue 13): "virtconsole
// screenshot", "type" and "keys" against the tiny guest's VGA console in
// real QEMU, through the proxy with TLS on both legs and directly with
// client certificates. What is typed is checked on the guest's serial
// port, where only a shell that read the keys can have written it.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
)

// jpegTolerance is how far (per channel, 0-255) a pixel of vncsnapshot's
// JPEG (quality 100) may be from the exact one.
const jpegTolerance = 8

// shellMeta is every character a shell treats specially, and more.
const shellMeta = `'"$;|&<>()*?[]{}\` + "`~!#%^=+,.:/@-_ "

// metaPayload returns a 200-character line of shell metacharacters and
// letters starting with tag, different for every tag.
func metaPayload(tag string) string {
	s := tag + ":"
	for i := 0; len(s) < 200; i++ {
		s += string(shellMeta[i%len(shellMeta)]) + string(rune('a'+i%26))
	}
	return s[:200]
}

// shellQuote quotes s for sh: in single quotes, each ' as '\”.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// printfLine is the shell command that writes payload on the guest's
// serial port.
func printfLine(payload string) string {
	return `printf '%s\n' ` + shellQuote(payload) + " > /dev/ttyS0"
}

// typeCLI types text with "virtconsole type ARGS --text TEXT".
func typeCLI(t *testing.T, args []string) func(string) error {
	return func(text string) error {
		r := run(t, nil, append(append([]string{"type"}, args...), "--text", text)...)
		if r.code != 0 {
			return fmt.Errorf("virtconsole type exited %d: %s", r.code, r.stderr)
		}
		return nil
	}
}

// typeMeta types a 200-character line of shell metacharacters into the
// guest's tty1 shell as the argument of printf, and waits for it on the
// serial port, intact.
func typeMeta(t *testing.T, serial *qemutest.SerialConsole, tag string, args []string) {
	t.Helper()
	payload := metaPayload(tag)
	start := time.Now()
	if err := typeCLI(t, args)("\n" + printfLine(payload) + "\n"); err != nil {
		t.Fatal(err)
	}
	typed := time.Since(start)
	if !waitForOr(15*time.Second, func() bool { return serial.Contains(payload + "\r\n") }) {
		t.Fatalf("the 200-character line did not reach the guest intact; the serial port has %q", serial.Output())
	}
	t.Logf("typed %d characters in %v", len(printfLine(payload))+2, typed.Round(time.Millisecond))
}

// screenshotCLI runs "virtconsole screenshot ARGS -o FILE --json" and
// returns the decoded PNG and the JSON.
func screenshotCLI(t *testing.T, file string, args ...string) (*image.RGBA, map[string]any) {
	t.Helper()
	r := run(t, nil, append(append([]string{"screenshot"}, args...), "-o", file, "--json")...)
	if r.code != 0 {
		t.Fatalf("screenshot exited %d: %s", r.code, r.stderr)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("--json: %q: %v", r.stdout, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the PNG does not decode: %v", err)
	}
	rgba, ok := img.(*image.RGBA)
	if !ok {
		rgba = image.NewRGBA(img.Bounds())
		for y := range img.Bounds().Dy() {
			for x := range img.Bounds().Dx() {
				rgba.Set(x, y, img.At(x, y))
			}
		}
	}
	if j["path"] != file || j["width"] != float64(img.Bounds().Dx()) || j["height"] != float64(img.Bounds().Dy()) {
		t.Errorf("--json %v for a %v image at %s", j, img.Bounds(), file)
	}
	return rgba, j
}

// pixelDiff compares two images of the same size channel by channel:
// the largest difference, and how many pixels differ by more than tol.
func pixelDiff(t *testing.T, a *image.RGBA, b image.Image, tol int) (maxDiff, over int) {
	t.Helper()
	if a.Bounds().Size() != b.Bounds().Size() {
		t.Fatalf("sizes differ: %v and %v", a.Bounds(), b.Bounds())
	}
	for y := range a.Rect.Dy() {
		for x := range a.Rect.Dx() {
			p := a.RGBAAt(x, y)
			r, g, bl, _ := b.At(b.Bounds().Min.X+x, b.Bounds().Min.Y+y).RGBA()
			d := max(absDiff(p.R, uint8(r>>8)), absDiff(p.G, uint8(g>>8)), absDiff(p.B, uint8(bl>>8)))
			maxDiff = max(maxDiff, d)
			if d > tol {
				over++
			}
		}
	}
	return maxDiff, over
}

func absDiff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// redBlue counts the pixels of a that are mostly red and mostly blue.
func redBlue(a *image.RGBA) (red, blue int) {
	for i := 0; i < len(a.Pix); i += 4 {
		r, g, b := int(a.Pix[i]), int(a.Pix[i+1]), int(a.Pix[i+2])
		switch {
		case r > 150 && g < 110 && b < 110:
			red++
		case b > 150 && r < 110 && g < 110:
			blue++
		}
	}
	return red, blue
}

// TestScriptedVNC: the tiny guest's VGA text console behind QEMU's
// VeNCrypt x509 port with client certificates. "virtconsole type"
// through the proxy (TLS on both legs) and directly types 200 characters
// of shell metacharacters into tty1's shell intact; "virtconsole
// screenshot", through the proxy and directly, saves the (paused) screen
// pixel for pixel as the real vncsnapshot sees it, while a scripted
// shared viewer stays connected; --wait-change times out on a still
// screen and returns once it changes; "virtconsole keys ctrl-alt-del"
// restarts the guest.
func TestScriptedVNC(t *testing.T) {
	qemutest.Need(t, "vncsnapshot")
	b := startVNCBed(t, "scripted-vnc")
	serial := b.boot()
	// The tty1 shell reads keys: "type" makes it print kbd-42 on ttyS0.
	typeIntoGuest(t, serial, typeCLI(t, b.proxyArgs))

	t.Run("type", func(t *testing.T) {
		t.Run("proxy", func(t *testing.T) { typeMeta(t, serial, "proxy", b.proxyArgs) })
		t.Run("direct", func(t *testing.T) { typeMeta(t, serial, "direct", b.directArgs) })
	})

	t.Run("screenshot", func(t *testing.T) {
		// Red and blue text on the VGA console, so that a channel mix-up
		// shows; then the guest is paused: a still screen, cursor too.
		if err := typeCLI(t, b.proxyArgs)("clear; printf '\\033[1;31mRED RED RED \\033[1;34mBLUE BLUE BLUE\\033[0m\\n'\n"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		if _, err := b.q.QMP("stop", nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)

		// A scripted shared viewer through "virtconsole vnc" and the proxy.
		v := startVNC(t, b.proxyArgs...)
		viewer := scriptedViewer(t, v.port, vncclient.Options{}, 30*time.Second)

		dir := t.TempDir()
		start := time.Now()
		shot, j := screenshotCLI(t, filepath.Join(dir, "proxy.png"), b.proxyArgs...)
		t.Logf("screenshot through the proxy in %v: %v", time.Since(start).Round(time.Millisecond), j)
		direct, _ := screenshotCLI(t, filepath.Join(dir, "direct.png"), b.directArgs...)
		if shot.Bounds().Dx() != 720 || shot.Bounds().Dy() != 400 {
			t.Fatalf("screenshot is %v, want the 720x400 VGA text console", shot.Bounds())
		}
		if !bytes.Equal(shot.Pix, direct.Pix) {
			t.Error("the screenshots through the proxy and direct differ")
		}
		// -o -: the PNG on standard output (and --view is enough).
		r := run(t, nil, append([]string{"screenshot", "-o", "-", "--view"}, b.proxyArgs...)...)
		if stdout, err := png.Decode(strings.NewReader(r.stdout)); r.code != 0 || err != nil {
			t.Errorf("-o -: exit %d, %v: %s", r.code, err, r.stderr)
		} else if _, over := pixelDiff(t, shot, stdout, 0); over != 0 {
			t.Errorf("-o -: %d pixels differ from -o FILE's", over)
		}
		if !bytes.Equal(shot.Pix, viewer.Image().Pix) {
			t.Error("the screenshot differs from the scripted viewer's Raw capture")
		}
		red, blue := redBlue(shot)
		if red < 200 || blue < 200 {
			t.Errorf("%d red and %d blue pixels: the coloured text is not on the screenshot (or its channels are mixed up)", red, blue)
		}

		// vncsnapshot, the same still screen, Raw on the wire (lossless),
		// but written only as JPEG: at quality 100 it differs from the
		// exact pixels by JPEG's rounding (1 seen, by a channel value),
		// so pixels may differ by a small tolerance, no more.
		ref := snapshot(t, v.port, "-quiet", "-nocursor", "-encodings", "raw", "-nojpeg", "-quality", "100")
		maxDiff, over := pixelDiff(t, shot, ref, jpegTolerance)
		t.Logf("vncsnapshot (JPEG q100) vs screenshot: largest channel difference %d, %d pixels over %d", maxDiff, over, jpegTolerance)
		if over > 0 {
			t.Errorf("%d pixels differ from vncsnapshot's image by more than %d (largest %d)", over, jpegTolerance, maxDiff)
		}
		// ... and a screenshot of the wrong screen would not pass: the
		// same comparison against the image shifted by one glyph row.
		shifted := image.NewRGBA(shot.Rect)
		copy(shifted.Pix, shot.Pix[16*shot.Stride:])
		if _, over := pixelDiff(t, shifted, ref, jpegTolerance); over == 0 {
			t.Error("the comparison cannot tell a shifted screen from vncsnapshot's")
		}

		// The scripted viewer is still connected and still served.
		if err := viewer.Capture(); err != nil {
			t.Fatalf("the viewer connected during the screenshots lost its session: %v", err)
		}

		// --wait-change on the still screen: exit 8 within the timeout,
		// one line, no image.
		out := filepath.Join(dir, "changed.png")
		start = time.Now()
		r = run(t, nil, append([]string{"screenshot", "--wait-change", filepath.Join(dir, "proxy.png"), "--timeout", "3s", "-o", out}, b.proxyArgs...)...)
		if r.code != cmdutil.ExitTimeout || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "did not change") {
			t.Errorf("--wait-change on a still screen: exit %d, stderr %q", r.code, r.stderr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("--timeout 3s took %v", d)
		}
		if _, err := os.Stat(out); err == nil {
			t.Error("an image was written after the timeout")
		}
		// --wait-stable on the still screen returns after a second of
		// nothing.
		start = time.Now()
		stable, _ := screenshotCLI(t, out, append([]string{"--wait-stable", "1s", "--timeout", "20s"}, b.proxyArgs...)...)
		if d := time.Since(start); d < time.Second || d > 15*time.Second {
			t.Errorf("--wait-stable 1s on a still screen took %v", d)
		}
		if !bytes.Equal(stable.Pix, shot.Pix) {
			t.Error("--wait-stable: the still screen changed")
		}
		os.Remove(out)
		// Resumed and typed into, the screen changes and --wait-change
		// returns it.
		if _, err := b.q.QMP("cont", nil); err != nil {
			t.Fatal(err)
		}
		done := make(chan result, 1)
		go func() {
			done <- run(t, nil, append([]string{"screenshot", "--wait-change", filepath.Join(dir, "proxy.png"), "--timeout", "60s", "-o", out}, b.directArgs...)...)
		}()
		typeCLI(t, b.proxyArgs)("echo changed\n")
		if r := <-done; r.code != 0 {
			t.Fatalf("--wait-change: exit %d: %s", r.code, r.stderr)
		}
		changed, _ := os.ReadFile(out)
		img, err := png.Decode(bytes.NewReader(changed))
		if err != nil {
			t.Fatal(err)
		}
		if _, over := pixelDiff(t, shot, img, 0); over == 0 {
			t.Error("--wait-change returned the same screen")
		}
	})

	t.Run("refused token", func(t *testing.T) {
		args := slices.Clone(b.proxyArgs)
		args[len(args)-1] = writeToken(t, "not-a-token")
		r := run(t, nil, append([]string{"screenshot", "-o", filepath.Join(t.TempDir(), "x.png")}, args...)...)
		checkRefusal(t, r, cmdutil.ExitRefused, "refused")
		r = run(t, nil, append([]string{"keys", "enter"}, args...)...)
		checkRefusal(t, r, cmdutil.ExitRefused, "refused")
	})

	t.Run("keys ctrl-alt-del", func(t *testing.T) {
		if serial.Contains(qemutest.GuestRestart) {
			t.Fatalf("%q before Ctrl+Alt+Del", qemutest.GuestRestart)
		}
		r := run(t, nil, append([]string{"keys", "ctrl-alt-del"}, b.proxyArgs...)...)
		if r.code != 0 {
			t.Fatalf("keys: exit %d: %s", r.code, r.stderr)
		}
		serial.Wait(t, qemutest.GuestRestart, 30*time.Second)
		// QEMU boots the guest again.
		waitFor(t, 60*time.Second, "the guest's second ready line", func() bool {
			return strings.Count(serial.Output(), qemutest.GuestReady) == 2
		})
	})
}

// checkRefusal checks a failed command's exit code and one-line message.
func checkRefusal(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("exit %d (want %d), stderr %q (want one line with %q)", r.code, code, r.stderr, want)
	}
}

// TestScriptedSPICE: QEMU SPICE on its TLS port behind the proxy;
// "virtconsole type --protocol spice" types 200 characters of shell
// metacharacters into tty1's shell over the SPICE inputs channel, and is
// refused (exit 2, one line) while another SPICE viewer is on the
// console, which stays connected.
func TestScriptedSPICE(t *testing.T) {
	g := qemutest.NewGraphicsGuest(t)
	b := newSPICEBed(t, qemutest.SPICEOptions{Args: g.Args}, map[string]string{"scripted-spice": "", "scripted-spice-2": ""})
	q := b.q
	args := append([]string{"--protocol", "spice"}, b.args(t, "scripted-spice")...)
	serial := g.Boot(t, q)
	typeIntoGuest(t, serial, typeCLI(t, args))
	typeMeta(t, serial, "spice", args)

	// A viewer on the console: "type" is refused and does not kick it,
	// with the viewer's token (the proxy refuses a second main channel of
	// its session) or another one (HTTP 409).
	v := startGraphics(t, "spice", args[2:]...)
	main, _ := scriptedSession(t, v.port, "")
	r := run(t, nil, append([]string{"type", "--text", "x"}, args...)...)
	checkRefusal(t, r, cmdutil.ExitRefused, "a SPICE viewer is on this console")
	other := append([]string{"--protocol", "spice"}, b.args(t, "scripted-spice-2")...)
	r = run(t, nil, append([]string{"keys", "enter"}, other...)...)
	checkRefusal(t, r, cmdutil.ExitRefused, "a SPICE viewer is on this console")
	time.Sleep(time.Second)
	select {
	case <-main.Done():
		t.Fatalf("the viewer's main channel ended: %v", main.Err())
	default:
	}
	if !q.Alive() {
		t.Fatal("QEMU died")
	}
}
