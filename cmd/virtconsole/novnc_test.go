package main

// A real browser console client end to end: noVNC (npm @novnc/novnc,
// unchanged) in Debian's headless Chromium, through the real proxy binary
// (TLS toward the browser, VeNCrypt x509 with a client certificate toward
// QEMU), to a real QEMU VGA screen.

import (
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

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
note();
</script></body></html>
`

func TestNoVNCThroughProxy(t *testing.T) {
	chromium := qemutest.Need(t, chromiumBinary)[0]
	qemutest.Require(t)
	novnc := npmPackage(t, "@novnc/novnc", "core/rfb.js")
	start := time.Now()

	web := servePage(t, "novnc", novnc, noVNCPage)

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
	var canvas canvasInfo
	waitFor(t, 30*time.Second, "text on noVNC's canvas", func() bool {
		b.eval(t, session, canvasInfoJS, &canvas)
		return canvas.Width >= 640 && canvas.Height >= 400 && canvas.Lit > 500
	})
	t.Logf("canvas %vx%v with %d lit pixels after %v", canvas.Width, canvas.Height, canvas.Lit,
		time.Since(start).Round(time.Millisecond))

	// A screenshot of the canvas, as the browser renders it.
	b.checkCanvasShot(t, session, canvas, "novnc.png", "VIRTCONSOLE_NOVNC_SCREENSHOT")

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
