package main

// The proxy's own browser console pages (server proxy --web) end to end,
// started as the README's "Browser consoles" says: each page, linked by
// "virtconsole open", in headless Chromium, over TLS
// to the proxy and TLS from the proxy to a real QEMU: the VNC and SPICE
// pages show the guest's screen, and the serial page's xterm.js reaches
// the tiny Linux guest's shell. No request leaves the page's origin and
// the token is in no URL the proxy receives.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/root"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtfake"
)

// termTextJS is the text of the serial page's terminal, line by line.
const termTextJS = `(() => {
	const b = window.term.buffer.active, lines = [];
	for (let i = 0; i < b.length; i++) lines.push(b.getLine(i).translateToString(true));
	return lines.join('\n');
})()`

// consoleState is the pages' window.consoleState.
type consoleState struct {
	State, Reason string
	Connects      int
	Downloads     int // vv.html's
	Violations    []string
}

// frontRecorder is a front proxy in the test: TLS, mapping /consoles/ to
// the virtconsole proxy (over TLS), recording every request it receives.
type frontRecorder struct {
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	URI         string
	TokenCookie bool
}

func (f *frontRecorder) requests() []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.reqs...)
}

// startFront starts the recording front proxy with the server certificate
// of dir, toward the proxy at *target (set before the first request).
func startFront(t *testing.T, dir string, target *url.URL) (*httptest.Server, *frontRecorder) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}},
	}
	rec := &frontRecorder{}
	mux := http.NewServeMux()
	mux.Handle("/consoles/", http.StripPrefix("/consoles", rp))
	front := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("token")
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recordedRequest{URI: r.RequestURI, TokenCookie: err == nil && c.Value != ""})
		rec.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	front.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	front.StartTLS()
	t.Cleanup(front.Close)
	return front, rec
}

func TestWebPages(t *testing.T) {
	chromium := qemutest.Need(t, chromiumBinary)[0]
	qemutest.Require(t)
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(time.Millisecond) }

	dir := pki(t)
	_, vncAddr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	_, _, spiceAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir})
	serialQ, serialAddr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Guest: true, Paused: true})
	tokens := map[string]resolver.Console{
		"web-vnc-token-1":    {Type: "vnc", Address: vncAddr},
		"web-spice-token-1":  {Type: "spice", Address: spiceAddr},
		"web-serial-token-1": {Type: "serial", Address: serialAddr},
	}

	// The README's "Browser consoles" commands: the proxy, and the link.
	lines := readmeSubsection(t, "Browser consoles")
	if len(lines) != 2 {
		t.Fatalf("README's Browser consoles block has %d commands, want the proxy and open:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	readmeArgs := func(line string, r *strings.Replacer) []string {
		f := strings.Fields(r.Replace(line))
		if len(f) == 0 || f[0] != "virtconsole" {
			t.Fatalf("README line %q does not run virtconsole", line)
		}
		return f[1:]
	}
	target := &url.URL{Scheme: "https"}
	front, rec := startFront(t, dir, target)
	// --allowed-origin: the front proxy's pages open websockets too.
	// A grant key, for a share link (below).
	grantKey := filepath.Join(t.TempDir(), "grant.key")
	if r := run(t, nil, "share", "--new-key", grantKey); r.code != 0 {
		t.Fatalf("share --new-key: exit %d: %s", r.code, r.stderr)
	}
	p := startDaemon(t, append(readmeArgs(lines[0], strings.NewReplacer("127.0.0.1:6443", "127.0.0.1:0", "./pki", dir,
		"tokens.json", writeTokens(t, tokens))), "--allowed-origin", front.URL, "--grant-key", grantKey)...)
	target.Host = p.addr
	t.Logf("QEMU, proxy and front proxy up after %v", since())

	b := startChromium(t, chromium, spkiHash(t, filepath.Join(dir, "server-cert.pem")))
	var grant string // the share link's, once minted

	// link is what "virtconsole open" prints for the token.
	link := func(t *testing.T, typ, token, proxy string) string {
		t.Helper()
		r := run(t, nil, "open", "--token-file", writeToken(t, token), "--type", typ, "--proxy", proxy)
		if r.code != 0 {
			t.Fatalf("virtconsole open: exit %d: %s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	// noViolations checks that the page's policy blocked nothing.
	noViolations := func(t *testing.T, session string) {
		t.Helper()
		var st consoleState
		b.eval(t, session, "window.consoleState", &st)
		if len(st.Violations) > 0 {
			t.Errorf("the Content-Security-Policy blocked: %v", st.Violations)
		}
	}
	waitConnected := func(t *testing.T, session string) {
		t.Helper()
		var st consoleState
		waitFor(t, 60*time.Second, "the page's connected state", func() bool {
			b.eval(t, session, "window.consoleState || {}", &st)
			if st.State == "refused" || st.State == "disconnected" || st.State == "no token" {
				t.Fatalf("page state %q: %s\nproxy log:\n%s", st.State, st.Reason, p.log.String())
			}
			return st.State == "connected"
		})
		noViolations(t, session)
		// The fragment is gone from the address bar.
		if h := b.evalString(t, session, "location.href"); strings.Contains(h, "#") || strings.Contains(h, "token") {
			t.Errorf("the page's address still holds the token: %s", h)
		}
	}
	waitCanvas := func(t *testing.T, session string) canvasInfo {
		t.Helper()
		defer noViolations(t, session)
		var c canvasInfo
		waitFor(t, 60*time.Second, "text on the page's canvas", func() bool {
			b.eval(t, session, canvasInfoJS, &c)
			return c.Width >= 640 && c.Height >= 400 && c.Lit > 500
		})
		return c
	}

	// VNC at the proxy's own origin, the link from the README's command.
	t.Run("vnc", func(t *testing.T) {
		r := run(t, nil, readmeArgs(lines[1], strings.NewReplacer("./mytoken", writeToken(t, "web-vnc-token-1"),
			"https://127.0.0.1:6443", "https://"+p.addr))...)
		if r.code != 0 {
			t.Fatalf("virtconsole open: exit %d: %s", r.code, r.stderr)
		}
		l := strings.TrimSpace(r.stdout)
		if want := "https://" + p.addr + "/vnc.html#token=web-vnc-token-1"; l != want {
			t.Fatalf("link %q, want %q", l, want)
		}
		session := b.openPage(t, l)
		waitConnected(t, session)
		c := waitCanvas(t, session)
		b.checkCanvasShot(t, session, c, "web-vnc.png", "VIRTCONSOLE_WEB_VNC_SCREENSHOT")
		t.Logf("VNC page: canvas %vx%v, %d lit pixels, after %v", c.Width, c.Height, c.Lit, since())
		if cookie := b.evalString(t, session, "document.cookie"); cookie != "" {
			t.Errorf("document.cookie after connecting: %q", cookie)
		}
	})

	// SPICE and serial behind the front proxy's /consoles/ prefix.
	t.Run("spice", func(t *testing.T) {
		session := b.openPage(t, link(t, "spice", "web-spice-token-1", front.URL+"/consoles/"))
		waitConnected(t, session)
		c := waitCanvas(t, session)
		b.checkCanvasShot(t, session, c, "web-spice.png", "VIRTCONSOLE_WEB_SPICE_SCREENSHOT")
		t.Logf("SPICE page: canvas %vx%v, %d lit pixels, after %v", c.Width, c.Height, c.Lit, since())
	})

	t.Run("serial", func(t *testing.T) {
		session := b.openPage(t, link(t, "serial", "web-serial-token-1", front.URL+"/consoles"))
		waitConnected(t, session)
		serialQ.WaitChardevConnected("s0", 30*time.Second)
		serialQ.Cont()
		var text string
		waitFor(t, 90*time.Second, "the guest's ready line in the terminal", func() bool {
			b.eval(t, session, termTextJS, &text)
			return strings.Contains(text, qemutest.GuestReady)
		})
		t.Logf("guest ready after %v", since())
		// Type as a user would: the keys go to xterm.js's textarea. The
		// shell may not read yet right after the ready line: type again
		// every 3 s (Enter first ends what an attempt left on the line).
		enter := func() {
			for _, typ := range []string{"keyDown", "keyUp"} {
				ev := map[string]any{"type": typ, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}
				if typ == "keyDown" {
					ev["text"] = "\r"
				}
				b.call(t, session, "Input.dispatchKeyEvent", ev, nil)
			}
		}
		answered := func() bool {
			b.eval(t, session, termTextJS, &text)
			for _, line := range strings.Split(text, "\n") {
				if strings.TrimSpace(line) == "42" {
					return true
				}
			}
			return false
		}
		b.eval(t, session, "window.term.focus(), true", nil)
		attempt := 1
		for ; ; attempt++ {
			enter()
			b.call(t, session, "Input.insertText", map[string]any{"text": "echo $((6*7))"}, nil)
			enter()
			if waitForOr(3*time.Second, answered) {
				break
			}
			if attempt == 20 {
				t.Fatalf("no 42 from the shell after %d attempts; the terminal has:\n%s", attempt, text)
			}
		}
		t.Logf("the shell answered 42 after %v (attempt %d)", since(), attempt)

		// Copy and paste: Ctrl+Shift+C copies the terminal's selection,
		// Ctrl+Shift+V pastes the clipboard into the console.
		b.call(t, "", "Browser.grantPermissions", map[string]any{
			"origin": front.URL, "permissions": []string{"clipboardReadWrite", "clipboardSanitizedWrite"}}, nil)
		b.call(t, session, "Emulation.setFocusEmulationEnabled", map[string]any{"enabled": true}, nil)
		ctrlShift := func(key string) {
			for _, typ := range []string{"rawKeyDown", "keyUp"} {
				b.call(t, session, "Input.dispatchKeyEvent", map[string]any{"type": typ, "key": key, "code": "Key" + key,
					"windowsVirtualKeyCode": int(key[0]), "modifiers": 2 | 8}, nil)
			}
		}
		clipboard := func(expr string) string {
			var r struct {
				Result struct{ Value string }
			}
			b.call(t, session, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true}, &r)
			return r.Result.Value
		}
		b.eval(t, session, "window.term.selectAll(), window.term.focus(), true", nil)
		ctrlShift("C")
		if got := clipboard("navigator.clipboard.readText()"); !strings.Contains(got, "echo $((6*7))") || !strings.Contains(got, "\n42") {
			t.Errorf("Ctrl+Shift+C copied %q, want the terminal's text", got)
		}
		b.eval(t, session, "window.term.clearSelection(), true", nil)
		clipboard("navigator.clipboard.writeText('echo $((7*8))').then(() => '')")
		ctrlShift("V")
		enter()
		waitFor(t, 10*time.Second, "the shell's answer 56 to the pasted line", func() bool {
			b.eval(t, session, termTextJS, &text)
			return strings.Contains(text, "\n56")
		})

		// The terminal follows the window's size.
		var cols0, cols1 int
		b.eval(t, session, "window.term.cols", &cols0)
		b.call(t, session, "Emulation.setDeviceMetricsOverride", map[string]any{"width": 600, "height": 400, "deviceScaleFactor": 1, "mobile": false}, nil)
		waitFor(t, 10*time.Second, "the terminal to narrow with the window", func() bool {
			b.eval(t, session, "window.term.cols", &cols1)
			return cols1 < cols0
		})
		b.call(t, session, "Emulation.clearDeviceMetricsOverride", nil, nil)
		t.Logf("terminal columns %d, then %d in a narrower window", cols0, cols1)
		noViolations(t, session)

		// Sharing: "virtconsole serial" joins the page's console, then a
		// view-only page (role=view in the link's fragment) replaces
		// this one. It first shows the console's earlier output, then
		// what the CLI's commands print; it takes no keys.
		cli := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"),
			"--token-file", writeToken(t, "web-serial-token-1"))
		typeUntil(t, cli, "echo v-$((8*8))\n", "v-64")
		b.openPage(t, "about:blank") // a new document: the link differs from this page's only in its fragment
		// The view-only page is a share link: "virtconsole share" mints
		// a view grant for the console, and the link carries it.
		r := run(t, nil, "share", "--token-file", writeToken(t, "web-serial-token-1"), "--type", "serial", "--role", "view",
			"--ttl", "15m", "--grant-key", grantKey, "--proxy", front.URL+"/consoles", "--json")
		var shared struct{ Link, Grant string }
		if err := json.Unmarshal([]byte(r.stdout), &shared); r.code != 0 || err != nil || !strings.Contains(shared.Link, "#") {
			t.Fatalf("share: exit %d, %v: %s%s", r.code, err, r.stdout, r.stderr)
		}
		grant = shared.Grant
		view := b.openPage(t, shared.Link)
		waitConnected(t, view)
		if !waitForOr(30*time.Second, func() bool {
			b.eval(t, view, termTextJS, &text)
			return strings.Contains(text, "v-64")
		}) {
			t.Fatalf("no earlier answer v-64 in the view-only page; it shows:\n%s\nthe CLI has %q", text, cli.out.String())
		}
		b.eval(t, view, "window.term.focus(), true", nil)
		b.call(t, view, "Input.insertText", map[string]any{"text": "echo z-$((3*11))"}, nil)
		viewEnter := func() {
			b.call(t, view, "Input.dispatchKeyEvent", map[string]any{"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}, nil)
			b.call(t, view, "Input.dispatchKeyEvent", map[string]any{"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}, nil)
		}
		viewEnter()
		typeUntil(t, cli, "echo w-$((9*9))\n", "w-81")
		waitFor(t, 30*time.Second, "the CLI's answer w-81 in the view-only page", func() bool {
			b.eval(t, view, termTextJS, &text)
			return strings.Contains(text, "w-81")
		})
		if strings.Contains(text, "z-") || strings.Contains(cli.out.String(), "z-") {
			t.Fatalf("the view-only page's keys reached the guest: page %q, CLI %q", text, cli.out.String())
		}
		if !strings.Contains(p.log.String(), "role=view") {
			t.Error("no view-role session in the proxy's log")
		}
		cli.stdin.Close()
		noViolations(t, view)
	})

	// A refused token: each page says so with the proxy's reason, and
	// offers to reconnect.
	t.Run("refused", func(t *testing.T) {
		for _, typ := range []string{"vnc", "spice", "serial"} {
			session := b.openPage(t, link(t, typ, "web-unknown-token-1", front.URL+"/consoles/"))
			var st consoleState
			waitFor(t, 30*time.Second, "the "+typ+" page's refused state", func() bool {
				b.eval(t, session, "window.consoleState || {}", &st)
				return st.State == "refused" && strings.Contains(st.Reason, ": ")
			})
			if !strings.HasSuffix(st.Reason, "unknown token") {
				t.Errorf("%s page: reason %q, want the proxy's \"unknown token\"", typ, st.Reason)
			}
			if hidden := b.evalString(t, session, "String(document.getElementById('reconnect').hidden)"); hidden != "false" {
				t.Errorf("%s page: no reconnect button", typ)
			}
			t.Logf("%s page: %s: %s", typ, st.State, st.Reason)
		}
	})

	// Every request the pages made went to the page's origin (the proxy's,
	// or the front proxy's under /consoles/), none with a token in its URL.
	reqs := b.requested()
	if len(reqs) == 0 {
		t.Fatalf("no requests recorded")
	}
	ws := 0
	for _, r := range reqs {
		u, err := url.Parse(r)
		if err != nil {
			t.Errorf("request %q: %v", r, err)
			continue
		}
		origin := u.Host == p.addr || (u.Host == strings.TrimPrefix(front.URL, "https://") && strings.HasPrefix(u.Path, "/consoles/"))
		if u.Scheme == "data" || u.Scheme == "about" {
			continue
		}
		if !origin || (u.Scheme != "https" && u.Scheme != "wss") {
			t.Errorf("a page requested %s: not its origin", r)
		}
		if u.Scheme == "wss" {
			ws++
		}
		if strings.Contains(r, "-token-1") && !strings.HasPrefix(u.Fragment, "token=") {
			t.Errorf("a token in a request URL: %s", r)
		} else if u.Fragment != "" && u.Scheme != "https" {
			t.Errorf("a fragment in a websocket URL: %s", r)
		}
	}
	if ws < 4 { // vnc, serial, spice main and display at least
		t.Errorf("%d websockets recorded, want at least 4: %v", ws, reqs)
	}
	t.Logf("%d requests from the pages, %d of them websockets", len(reqs), ws)

	// What the front proxy received: no token or grant in any URL, and
	// the websockets carried it as the cookie.
	cookies := 0
	for _, r := range rec.requests() {
		if strings.Contains(r.URI, "token") || grant != "" && strings.Contains(r.URI, grant[:20]) {
			t.Errorf("the front proxy received a token in %s", r.URI)
		}
		if strings.HasSuffix(r.URI, "/websockify") && r.TokenCookie {
			cookies++
		} else if r.TokenCookie {
			t.Errorf("the token cookie went with %s, not only to the websocket", r.URI)
		}
	}
	if cookies < 3 {
		t.Errorf("%d websockets with the token cookie through the front proxy, want at least 3 (SPICE main, display; serial)", cookies)
	}
	if strings.Contains(p.log.String(), "-token-1") || grant != "" && strings.Contains(p.log.String(), grant) {
		t.Errorf("the proxy logged a token:\n%s", p.log.String())
	}
	t.Logf("done after %v", since())
}

// TestREADMEOpen runs the README's "virtconsole open" commands as written
// there but for the token file: the DOMAIN line in process, with the
// libvirt fake holding an enabled "myvm" (its token read afresh from
// libvirt); the others with the built binary, --browser with a recording
// xdg-open first on PATH.
func TestREADMEOpen(t *testing.T) {
	var lines []string
	for _, l := range readmeSubsection(t, "virtconsole open") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 3 {
		t.Fatalf("README's virtconsole open block has %d commands, want 3:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	const tok = "readme-open-token-1"
	tf := writeToken(t, tok)
	args := func(line string) []string {
		f := strings.Fields(strings.ReplaceAll(line, "./mytoken", tf))
		if len(f) == 0 || f[0] != "virtconsole" {
			t.Fatalf("README line %q does not run virtconsole", line)
		}
		return f[1:]
	}

	// DOMAIN: the token libvirt holds for myvm's VNC console.
	h := libvirtfake.New()
	h.Start(h.Define("myvm", `<graphics type='vnc' port='5901' listen='127.0.0.1'/>`))
	ctx := context.Background()
	c, err := libvirtadmin.Connect(ctx, "qemu:///system", libvirtadmin.WithConnector(h.Connect))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Enable(ctx, "myvm", nil, "", false); err != nil {
		t.Fatal(err)
	}
	vncTok, _, err := c.Token(ctx, "myvm", protocols.KindVNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	out, stderr, err := cmdtest.Run(t, func(f *cmdutil.Factory) *cobra.Command {
		f.Getenv = func(string) string { return "" }
		f.Libvirt = func(ctx context.Context, uri string) (*libvirtadmin.Conn, error) {
			return libvirtadmin.Connect(ctx, f.LibvirtURI(uri), libvirtadmin.WithConnector(h.Connect))
		}
		return root.NewCmdRoot(f)
	}, args(lines[0])...)
	if want := "https://proxy.example:6443/vnc.html#token=" + vncTok + "\n"; err != nil || out != want {
		t.Errorf("%s: %q %q %v; want %q", lines[0], out, stderr, err, want)
	}

	// --browser: what xdg-open was given.
	bin := t.TempDir()
	opened := filepath.Join(t.TempDir(), "opened")
	script := "#!/bin/sh\nprintf '%s\\n' \"$*\" > " + opened + "\n"
	if err := os.WriteFile(filepath.Join(bin, "xdg-open"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	runtimeDir := t.TempDir()
	cmd := exec.Command(vcBinary, args(lines[1])...)
	cmd.Env = env("PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "XDG_RUNTIME_DIR="+runtimeDir)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("%s: %v, output %q", lines[1], err, out)
	}
	// xdg-open's command line, which every local user can read, carries
	// no token: it names a page that only the user can read, which sends
	// the browser on to the link.
	argv, err := os.ReadFile(opened)
	page := strings.TrimPrefix(strings.TrimSpace(string(argv)), "file://")
	if err != nil || strings.Contains(string(argv), tok) || !strings.HasPrefix(page, filepath.Join(runtimeDir, "virtconsole", "open")+"/") {
		t.Fatalf("%s: xdg-open got %q (%v); want a file:// URL under %s and no token", lines[1], argv, err, runtimeDir)
	}
	fi, err := os.Stat(page)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: the redirect page %s: %v, mode %v; want 0600", lines[1], page, err, fi.Mode())
	}
	b, _ := os.ReadFile(page)
	if link := "https://proxy.example:6443/serial.html#token=" + tok; !strings.Contains(string(b), `url=`+link+`"`) || !strings.Contains(string(b), `location.replace("`+link+`")`) {
		t.Errorf("%s: the redirect page does not send the browser to %s:\n%s", lines[1], link, b)
	}

	r := run(t, nil, args(lines[2])...)
	if want := "https://front.example/consoles/vnc.html#token=" + tok + "\n"; r.code != 0 || r.stdout != want {
		t.Errorf("%s: exit %d, %q %q; want %q", lines[2], r.code, r.stdout, r.stderr, want)
	}
}
