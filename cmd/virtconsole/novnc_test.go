package main

// A real browser console client end to end: noVNC (npm @novnc/novnc,
// unchanged) in Debian's headless Chromium, through the real proxy binary
// (TLS toward the browser, VeNCrypt x509 with a client certificate toward
// QEMU), to a real QEMU VGA screen.

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// chromiumBinary is Debian's chromium-headless-shell (a link in /usr/bin
// to /usr/lib/chromium/chromium-headless-shell).
const chromiumBinary = "chromium-headless-shell"

// noVNCDir is where .ci/install-deps puts npm's @novnc/novnc, relative to
// this package's directory.
const noVNCDir = "../../.cache/npm/node_modules/@novnc/novnc"

// noVNCPage loads noVNC's RFB from /novnc/ and connects to the websocket
// URL in the query's "ws" parameter, recording what happens in window.ev
// (and a summary in document.title).
const noVNCPage = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>starting</title>
<style>html,body{margin:0;padding:0;background:#fff}#screen{width:800px;height:600px}</style>
</head><body><div id="screen"></div>
<script type="module">
window.ev = {connect: false, disconnect: null, desktopname: null, securityfailure: null, credentialsrequired: false, error: null};
const note = () => { document.title = JSON.stringify(window.ev); };
window.addEventListener('error', e => { window.ev.error = String(e.message); note(); });
window.addEventListener('unhandledrejection', e => { window.ev.error = String(e.reason); note(); });
import RFB from '/novnc/core/rfb.js';
const ws = new URLSearchParams(location.search).get('ws');
const rfb = new RFB(document.getElementById('screen'), ws, {wsProtocols: ['binary']});
rfb.scaleViewport = false;
rfb.addEventListener('connect', () => { window.ev.connect = true; note(); });
rfb.addEventListener('disconnect', e => { window.ev.disconnect = {clean: e.detail.clean}; note(); });
rfb.addEventListener('desktopname', e => { window.ev.desktopname = e.detail.name; note(); });
rfb.addEventListener('securityfailure', e => { window.ev.securityfailure = e.detail; note(); });
rfb.addEventListener('credentialsrequired', () => { window.ev.credentialsrequired = true; note(); });
window.rfb = rfb;
// canvasInfo: the size and place of noVNC's canvas and how many of its
// pixels are not black (the VGA text is light on black).
window.canvasInfo = () => {
	const c = document.querySelector('#screen canvas');
	if (!c || !c.width || !c.height) return null;
	const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	let lit = 0;
	for (let i = 0; i < d.length; i += 4) if (d[i] | d[i+1] | d[i+2]) lit++;
	const r = c.getBoundingClientRect();
	return {width: c.width, height: c.height, x: r.x, y: r.y, cssWidth: r.width, cssHeight: r.height, lit};
};
note();
</script></body></html>
`

func TestNoVNCThroughProxy(t *testing.T) {
	chromium := qemutest.Need(t, chromiumBinary)[0]
	qemutest.Require(t)
	novnc, err := filepath.Abs(noVNCDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(novnc, "core", "rfb.js")); err != nil {
		msg := fmt.Sprintf("noVNC is not installed (%v); run .ci/install-deps", err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	start := time.Now()

	// The page and noVNC's files, over plain HTTP on loopback: its origin
	// is what the proxy must allow.
	mux := http.NewServeMux()
	mux.Handle("/novnc/", http.StripPrefix("/novnc/", http.FileServer(http.Dir(novnc))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, noVNCPage)
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)

	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(t, map[string]resolver.Console{"novnc-token-1": {Type: "vnc", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir,
		"--connect-tls-dir", dir, "--tokens", tokens, "--allowed-origin", web.URL)
	t.Logf("QEMU, proxy and web server up after %v", time.Since(start).Round(time.Millisecond))

	wsURL := "wss://" + p.addr + "/websockify?token=novnc-token-1"
	pageURL := web.URL + "/?" + url.Values{"ws": {wsURL}}.Encode()
	b := startChromium(t, chromium, spkiHash(t, filepath.Join(dir, "server-cert.pem")))
	session := b.openPage(t, pageURL)

	type events struct {
		Connect             bool
		Disconnect          *struct{ Clean bool }
		Desktopname         *string
		Securityfailure     any
		Credentialsrequired bool
		Error               *string
	}
	var ev events
	waitFor(t, 30*time.Second, "noVNC's connect and desktopname events", func() bool {
		b.eval(t, session, "window.ev || {}", &ev)
		if ev.Disconnect != nil || ev.Securityfailure != nil || ev.Credentialsrequired || ev.Error != nil {
			t.Fatalf("noVNC did not connect: %+v (page title %q)\nproxy log:\n%s",
				ev, b.evalString(t, session, "document.title"), p.log.String())
		}
		return ev.Connect && ev.Desktopname != nil
	})
	if *ev.Desktopname != "QEMU" {
		t.Errorf("desktopname = %q, want QEMU", *ev.Desktopname)
	}
	t.Logf("noVNC connected after %v", time.Since(start).Round(time.Millisecond))

	// Wait until the framebuffer shows the VGA BIOS text: noVNC's canvas
	// is at least VGA text mode (720x400) and has lit pixels.
	var canvas struct {
		Width, Height, X, Y, CSSWidth, CSSHeight float64
		Lit                                      int
	}
	waitFor(t, 30*time.Second, "text on noVNC's canvas", func() bool {
		b.eval(t, session, "window.canvasInfo && window.canvasInfo()", &canvas)
		return canvas.Width >= 640 && canvas.Height >= 400 && canvas.Lit > 500
	})
	t.Logf("canvas %vx%v with %d lit pixels after %v", canvas.Width, canvas.Height, canvas.Lit,
		time.Since(start).Round(time.Millisecond))

	// A screenshot of the canvas, as the browser renders it.
	var shot struct{ Data []byte }
	b.call(t, session, "Page.captureScreenshot", map[string]any{
		"format": "png",
		"clip":   map[string]any{"x": canvas.X, "y": canvas.Y, "width": canvas.CSSWidth, "height": canvas.CSSHeight, "scale": 1},
	}, &shot)
	path := filepath.Join(t.TempDir(), "novnc.png")
	if err := os.WriteFile(path, shot.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if dst := os.Getenv("VIRTCONSOLE_NOVNC_SCREENSHOT"); dst != "" {
		os.WriteFile(dst, shot.Data, 0o644)
	}
	img, err := png.Decode(bytes.NewReader(shot.Data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	bounds := img.Bounds()
	if bounds.Dx() < 640 || bounds.Dy() < 400 {
		t.Errorf("screenshot is %dx%d, want at least 640x400", bounds.Dx(), bounds.Dy())
	}
	if n, lit := colours(img); n < 2 || lit < 500 {
		t.Errorf("screenshot looks blank: %d distinct colours, %d non-black pixels", n, lit)
	} else {
		t.Logf("screenshot %dx%d: %d distinct colours, %d non-black pixels", bounds.Dx(), bounds.Dy(), n, lit)
	}

	// A clean goodbye: noVNC disconnects, the proxy ends the session.
	b.eval(t, session, "window.rfb.disconnect(), true", nil)
	waitFor(t, 10*time.Second, "noVNC's disconnect event", func() bool {
		b.eval(t, session, "window.ev", &ev)
		return ev.Disconnect != nil
	})
	if !ev.Disconnect.Clean {
		t.Errorf("noVNC's disconnect was not clean")
	}
	waitFor(t, 10*time.Second, "the session end log line", func() bool {
		return strings.Contains(p.log.String(), "session end")
	})
	if strings.Contains(p.log.String(), "novnc-token-1") {
		t.Errorf("the proxy logged the token:\n%s", p.log.String())
	}
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}

// colours counts the distinct colours in img and its non-black pixels.
func colours(img image.Image) (distinct, lit int) {
	seen := map[[3]uint32]bool{}
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			seen[[3]uint32{cr, cg, cb}] = true
			if cr|cg|cb != 0 {
				lit++
			}
		}
	}
	return len(seen), lit
}

// spkiHash is the base64 SHA-256 of the certificate's public key info in
// the PEM file: what --ignore-certificate-errors-spki-list takes.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browser is a headless Chromium driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: Chromium reads NUL-terminated JSON
// commands on fd 3 and writes answers and events on fd 4). The websocket
// endpoint (--remote-debugging-port) would do as well, but it accepts only
// text frames and tunnel/wsconn sends binary ones.
type browser struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	done   chan struct{}

	mu     sync.Mutex
	nextID int
	w      *os.File
	r      *os.File
	br     *bufio.Reader
}

// startChromium starts the headless shell with a fresh profile, trusting
// the server certificate whose SPKI hash is spki, and kills its process
// group when the test ends.
func startChromium(t *testing.T, bin, spki string) *browser {
	t.Helper()
	cmdR, cmdW, err := os.Pipe() // commands: we write, Chromium reads fd 3
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe() // answers: Chromium writes fd 4, we read
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{stderr: &syncBuffer{}, done: make(chan struct{}), w: cmdW, r: outR, br: bufio.NewReader(outR)}
	b.cmd = exec.Command(bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-breakpad", "--disable-crash-reporter", "--disable-dev-shm-usage",
		"--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
		"--window-size=1024,768",
		"--user-data-dir="+t.TempDir(),
		"--ignore-certificate-errors-spki-list="+spki,
		"--remote-debugging-pipe",
		"about:blank")
	b.cmd.Stdout, b.cmd.Stderr = b.stderr, b.stderr
	b.cmd.ExtraFiles = []*os.File{cmdR, outW}
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers too
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmdR.Close()
	outW.Close()
	go func() { b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		// Ask first, so that Chromium reaps its own helpers (this
		// machine's init does not reap orphans), then kill the group.
		b.w.Write([]byte(`{"id":-1,"method":"Browser.close"}` + "\x00"))
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
		}
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.done
		b.w.Close()
		b.r.Close()
		if t.Failed() {
			t.Logf("chromium output:\n%s", b.stderr.String())
		}
	})
	var v struct{ Product string }
	b.call(t, "", "Browser.getVersion", nil, &v)
	t.Logf("browser: %s", v.Product)
	return b
}

// cdpError is an error answer to a DevTools command.
type cdpError struct {
	Code    int
	Message string
	Data    string
}

// call sends method with params (to the page session, or the browser when
// session is "") and decodes the answer's result into result.
func (b *browser) call(t *testing.T, session, method string, params, result any) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextID++
	id := b.nextID
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.w.Write(append(data, 0)); err != nil {
		t.Fatalf("DevTools %s: %v; chromium output:\n%s", method, err, b.stderr.String())
	}
	b.r.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		line, err := b.br.ReadBytes(0)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("DevTools %s: no answer within 30s", method)
			}
			t.Fatalf("DevTools %s: %v; chromium output:\n%s", method, err, b.stderr.String())
		}
		var resp struct {
			ID     int
			Result json.RawMessage
			Error  *cdpError
		}
		if err := json.Unmarshal(line[:len(line)-1], &resp); err != nil {
			t.Fatalf("DevTools %s: %v in %q", method, err, line)
		}
		if resp.ID != id {
			continue // an event, or an answer to nobody
		}
		if resp.Error != nil {
			t.Fatalf("DevTools %s: %d %s %s", method, resp.Error.Code, resp.Error.Message, resp.Error.Data)
		}
		if result != nil {
			if err := json.Unmarshal(resp.Result, result); err != nil {
				t.Fatalf("DevTools %s: %v in %s", method, err, resp.Result)
			}
		}
		return
	}
}

// openPage attaches to the browser's page, navigates it to pageURL and
// returns the DevTools session for it.
func (b *browser) openPage(t *testing.T, pageURL string) string {
	t.Helper()
	var targets struct {
		TargetInfos []struct{ TargetID, Type string }
	}
	b.call(t, "", "Target.getTargets", nil, &targets)
	var id string
	for _, ti := range targets.TargetInfos {
		if ti.Type == "page" {
			id = ti.TargetID
		}
	}
	if id == "" {
		var created struct{ TargetID string }
		b.call(t, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &created)
		id = created.TargetID
	}
	var att struct{ SessionID string }
	b.call(t, "", "Target.attachToTarget", map[string]any{"targetId": id, "flatten": true}, &att)
	var nav struct{ ErrorText string }
	b.call(t, att.SessionID, "Page.navigate", map[string]any{"url": pageURL}, &nav)
	if nav.ErrorText != "" {
		t.Fatalf("navigate to the test page: %s", nav.ErrorText)
	}
	return att.SessionID
}

// eval evaluates expr in the page and decodes its (JSON) value into v.
func (b *browser) eval(t *testing.T, session, expr string, v any) {
	t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage
		}
		ExceptionDetails *struct {
			Text      string
			Exception struct{ Description string }
		}
	}
	b.call(t, session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &r)
	if r.ExceptionDetails != nil {
		t.Fatalf("page: %s: %s %s", expr, r.ExceptionDetails.Text, r.ExceptionDetails.Exception.Description)
	}
	if v != nil && len(r.Result.Value) > 0 {
		if err := json.Unmarshal(r.Result.Value, v); err != nil {
			t.Fatalf("page: %s: %v in %s", expr, err, r.Result.Value)
		}
	}
}

func (b *browser) evalString(t *testing.T, session, expr string) string {
	t.Helper()
	var s string
	b.eval(t, session, expr, &s)
	return s
}
