package main

// A headless Chromium driven from Go over the DevTools protocol, for the
// browser console clients' end-to-end tests (novnc_test.go,
// spicehtml5_test.go), and the npm packages .ci/install-deps installs for
// them.

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
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chromiumBinary is Debian's chromium-headless-shell (a link in /usr/bin
// to /usr/lib/chromium/chromium-headless-shell).
const chromiumBinary = "chromium-headless-shell"

// npmDir is where .ci/install-deps installs the npm packages, relative to
// this package's directory.
const npmDir = "../../.cache/npm/node_modules"

// npmPackage returns the absolute directory of the npm package pkg (such
// as "@novnc/novnc") as .ci/install-deps installs it, after checking that
// file (a path inside it) exists. Without it the test is skipped, or fails
// when CI is set.
func npmPackage(t *testing.T, pkg, file string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(npmDir, pkg))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
		msg := fmt.Sprintf("npm package %s is not installed (%v); run .ci/install-deps", pkg, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// screenshot captures the page's area at x, y (CSS pixels) of size w×h
// as a PNG, keeps it as name in the test's temporary directory (and in the
// file named by the environment variable envVar, if set) and decodes it.
func (b *browser) screenshot(t *testing.T, session string, x, y, w, h float64, name, envVar string) image.Image {
	t.Helper()
	var shot struct{ Data []byte }
	b.call(t, session, "Page.captureScreenshot", map[string]any{
		"format": "png",
		"clip":   map[string]any{"x": x, "y": y, "width": w, "height": h, "scale": 1},
	}, &shot)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, shot.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if dst := os.Getenv(envVar); dst != "" {
		if err := os.WriteFile(dst, shot.Data, 0o644); err != nil {
			t.Errorf("%s: %v", envVar, err)
		}
	}
	img, err := png.Decode(bytes.NewReader(shot.Data))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	return img
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
	// requests are the URLs of the requests and websockets the pages
	// opened (Network events, read as answers are awaited).
	requests []string
	w        *os.File
	r        *os.File
	br       *bufio.Reader
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
			Method string
			Params struct {
				URL     string
				Request struct{ URL string }
			}
		}
		if err := json.Unmarshal(line[:len(line)-1], &resp); err != nil {
			t.Fatalf("DevTools %s: %v in %q", method, err, line)
		}
		switch resp.Method {
		case "Network.requestWillBeSent":
			b.requests = append(b.requests, resp.Params.Request.URL)
		case "Network.webSocketCreated":
			b.requests = append(b.requests, resp.Params.URL)
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

// openPage attaches to the browser's page, records its requests (see
// requested), navigates it to pageURL and returns the DevTools session
// for it.
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
	b.call(t, att.SessionID, "Network.enable", nil, nil)
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

// requested returns the URLs of the requests and websockets the pages
// opened so far.
func (b *browser) requested() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.requests...)
}

func (b *browser) evalString(t *testing.T, session, expr string) string {
	t.Helper()
	var s string
	b.eval(t, session, expr, &s)
	return s
}

// servePage serves page at / and the directory dir under /prefix/, over
// plain HTTP on loopback: the page's origin is what the proxy must allow.
func servePage(t *testing.T, prefix, dir, page string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/"+prefix+"/", http.StripPrefix("/"+prefix+"/", http.FileServer(http.Dir(dir))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, page)
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)
	return web
}

// canvasInfo is what canvasInfoJS reports of the console's canvas: its
// size, where it is on the page, and how many pixels are lit.
type canvasInfo struct {
	ID                                       string
	Width, Height, X, Y, CSSWidth, CSSHeight float64
	Lit                                      int
}

// canvasInfoJS reports the console canvas of a page (the first canvas in
// #screen) as canvasInfo: its size, where it is, and how many of its
// pixels are not black (the VGA text is light on black).
const canvasInfoJS = `(() => {
	const c = document.querySelector('#screen canvas');
	if (!c || !c.width || !c.height) return null;
	const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
	let lit = 0;
	for (let i = 0; i < d.length; i += 4) if (d[i] | d[i+1] | d[i+2]) lit++;
	const r = c.getBoundingClientRect();
	return {id: c.id, width: c.width, height: c.height, x: r.x, y: r.y, cssWidth: r.width, cssHeight: r.height, lit};
})()`

// checkCanvasShot takes a screenshot of the canvas as the browser renders
// it (saved as name, and copied to $envVar if set) and checks it is at
// least 640x400 and not blank.
func (b *browser) checkCanvasShot(t *testing.T, session string, c canvasInfo, name, envVar string) {
	t.Helper()
	img := b.screenshot(t, session, c.X, c.Y, c.CSSWidth, c.CSSHeight, name, envVar)
	bounds := img.Bounds()
	if bounds.Dx() < 640 || bounds.Dy() < 400 {
		t.Errorf("screenshot is %dx%d, want at least 640x400", bounds.Dx(), bounds.Dy())
	}
	if n, lit := colours(img); n < 2 || lit < 500 {
		t.Errorf("screenshot looks blank: %d distinct colours, %d non-black pixels", n, lit)
	} else {
		t.Logf("screenshot %dx%d: %d distinct colours, %d non-black pixels", bounds.Dx(), bounds.Dy(), n, lit)
	}
}
