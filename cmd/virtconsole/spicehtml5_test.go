package main

// A real browser SPICE client end to end: spice-html5 (npm
// @spice-project/spice-html5, unchanged) in Debian's headless Chromium,
// through the real proxy binary (TLS toward the browser, one websocket per
// SPICE channel, all with the same token; TLS toward QEMU's SPICE TLS
// port), to a real QEMU QXL screen.

import (
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// spiceHTML5Page loads spice-html5's ES modules from /spice-html5/src/ and
// connects SpiceMainConn to the websocket URL in the query's "ws"
// parameter, recording what happens in window.ev (and a summary in
// document.title). spice-html5 opens the other channels itself, on the
// same URL.
const spiceHTML5Page = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>starting</title>
<style>html,body{margin:0;padding:0;background:#fff}#screen canvas{display:block}</style>
</head><body><div id="screen"></div><div id="messages"></div>
<script type="module">
window.ev = {success: null, agent: false, errors: []};
const note = () => { document.title = JSON.stringify(window.ev); };
window.addEventListener('error', e => { window.ev.errors.push('page: ' + e.message); note(); });
window.addEventListener('unhandledrejection', e => { window.ev.errors.push('page: ' + e.reason); note(); });
import { SpiceMainConn } from '/spice-html5/src/main.js';
const uri = new URLSearchParams(location.search).get('ws');
try {
	window.sc = new SpiceMainConn({
		uri, password: '', screen_id: 'screen', message_id: 'messages',
		onsuccess: m => { window.ev.success = String(m); note(); },
		onerror: e => { window.ev.errors.push(String(e && e.message || e)); note(); },
		onagent: () => { window.ev.agent = true; note(); },
	});
} catch (e) {
	window.ev.errors.push('SpiceMainConn: ' + e); note();
}
// messages: what spice-html5 logged into #messages ("error: …").
window.messages = () => Array.from(document.querySelectorAll('#messages p'),
	p => p.className.replace('spice-message-', '') + ': ' + p.textContent);
note();
</script></body></html>
`

var sessionStartChannelRE = regexp.MustCompile(`"session start".* channel=(\S+)`)

func TestSPICEHTML5ThroughProxy(t *testing.T) {
	chromium := qemutest.Need(t, chromiumBinary)[0]
	qemutest.Require(t)
	spiceHTML5 := npmPackage(t, "@spice-project/spice-html5", "src/main.js")
	start := time.Now()

	web := servePage(t, "spice-html5", spiceHTML5, spiceHTML5Page)

	dir := pki(t)
	_, _, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir})
	const token = "spice-html5-token-1"
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "spice", Address: tlsAddr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir,
		"--connect-tls-dir", dir, "--tokens", tokens, "--allowed-origin", web.URL)
	t.Logf("QEMU, proxy and web server up after %v", time.Since(start).Round(time.Millisecond))

	wsURL := "wss://" + p.addr + "/websockify?token=" + token
	pageURL := web.URL + "/?" + url.Values{"ws": {wsURL}}.Encode()
	b := startChromium(t, chromium, spkiHash(t, filepath.Join(dir, "server-cert.pem")))
	session := b.openPage(t, pageURL)

	type events struct {
		Success *string
		Agent   bool
		Errors  []string
	}
	var ev events
	failed := func(what string) {
		t.Helper()
		var msgs []string
		b.eval(t, session, "window.messages ? window.messages() : []", &msgs)
		t.Fatalf("spice-html5 %s: %+v\nspice-html5 messages:\n\t%s\nproxy log:\n%s",
			what, ev, strings.Join(msgs, "\n\t"), p.log.String())
	}
	waitFor(t, 30*time.Second, "spice-html5's main channel to connect", func() bool {
		b.eval(t, session, "window.ev || {}", &ev)
		if len(ev.Errors) > 0 {
			failed("failed")
		}
		return ev.Success != nil
	})
	t.Logf("spice-html5's main channel connected (%q) after %v", *ev.Success, time.Since(start).Round(time.Millisecond))

	// Wait until the display channel's primary surface shows the VGA BIOS
	// text: a canvas of at least VGA text mode (720x400) with lit pixels.
	var canvas canvasInfo
	waitFor(t, 30*time.Second, "text on spice-html5's display surface", func() bool {
		b.eval(t, session, "window.ev", &ev)
		if len(ev.Errors) > 0 {
			failed("failed after connecting")
		}
		b.eval(t, session, canvasInfoJS, &canvas)
		return canvas.Width >= 640 && canvas.Height >= 400 && canvas.Lit > 500
	})
	t.Logf("surface %s %vx%v with %d lit pixels after %v", canvas.ID, canvas.Width, canvas.Height, canvas.Lit,
		time.Since(start).Round(time.Millisecond))

	// A screenshot of the canvas, as the browser renders it.
	b.checkCanvasShot(t, session, canvas, "spicehtml5.png", "VIRTCONSOLE_SPICEHTML5_SCREENSHOT")

	// The proxy followed the session: one websocket per channel, each
	// logged with its channel, main and display among them.
	channels := map[string]bool{}
	for _, m := range sessionStartChannelRE.FindAllStringSubmatch(p.log.String(), -1) {
		channels[m[1]] = true
	}
	for _, want := range []string{"main:0", "display:0"} {
		if !channels[want] {
			t.Errorf("no session start line with channel=%s; proxy log:\n%s", want, p.log.String())
		}
	}
	t.Logf("channels through the proxy: %v", channels)

	// A goodbye: spice-html5 closes every channel's websocket, the proxy
	// ends every session it started.
	b.eval(t, session, "window.sc.stop(), true", nil)
	waitFor(t, 10*time.Second, "a session end line per session start line", func() bool {
		l := p.log.String()
		return strings.Count(l, "session end") >= strings.Count(l, "session start")
	})
	if strings.Contains(p.log.String(), token) {
		t.Errorf("the proxy logged the token:\n%s", p.log.String())
	}
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}
