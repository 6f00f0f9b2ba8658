// Package web is the proxy's browser consoles: a VNC page (noVNC), a SPICE
// page (spice-html5) and a serial page (xterm.js), with the libraries
// vendored at pinned versions (vendor/README.md) and embedded, so the
// binary serves them with no network.
//
// Handler serves them at its root; mounted at the proxy's root beside
// /websockify, or behind a front proxy that strips a prefix, since every
// URL in the pages is relative and each page opens the websocket
// "websockify" beside itself. A page's link carries the token in its
// fragment (see Link), which browsers never send; the page hands it to the
// websocket as the "token" cookie, scoped to the websocket's path. When
// the proxy refuses a page's websocket, Refusals (the proxy's
// ErrorHandler) keeps its one-line reason for the page to show.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed static vendor
var files embed.FS

// Pages are the console pages, by console kind.
var Pages = map[string]string{
	"vnc":     "vnc.html",
	"spice":   "spice.html",
	"serial":  "serial.html",
	"console": "serial.html",
}

// page is what static/page.html, the one template of the pages, varies.
type page struct {
	Title, Script string
	Styles        []string
	Messages      bool // spice-html5 logs into #messages
	Download      bool // a Download button (vv.html)
}

var pages = map[string]page{
	"vnc.html":    {Title: "VNC", Script: "vnc.js"},
	"spice.html":  {Title: "SPICE", Script: "spice.js", Messages: true},
	"serial.html": {Title: "Serial", Script: "serial.js", Styles: []string{"vendor/xterm/css/xterm.css"}},
	VVPage:        {Title: "SPICE", Script: "vv.js", Download: true},
}

// VVPage is the page that downloads a SPICE console's .vv file for a
// native viewer (remote-viewer): its link carries the token in the
// fragment as the console pages' do (VVLink); the page POSTs it, in an
// Authorization header, to "spice.vv" beside itself (the proxy's
// --spice-connect-listen gateway answers with the file) and saves the
// answer as console.vv.
const VVPage = "vv.html"

// VVLink is Link for VVPage: base/vv.html#token=TOKEN.
func VVLink(base, token string) (string, error) {
	return pageLink(base, VVPage, token)
}

// renderPage renders the page name from the template.
func renderPage(name string) ([]byte, error) {
	tmpl, err := template.ParseFS(files, "static/page.html")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, pages[name]); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ContentSecurityPolicy is the policy of every response but the serial
// page: everything from the page's own origin ('self' includes the
// ws:/wss: websocket to it), no inline or evaluated script or style, no
// framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; font-src 'self'; " +
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// SerialContentSecurityPolicy is the serial page's policy: the same but
// for inline styles, since xterm.js sizes its rows with <style> elements
// it generates (they carry no script).
var SerialContentSecurityPolicy = strings.Replace(ContentSecurityPolicy, "style-src 'self';", "style-src 'self' 'unsafe-inline';", 1)

// Handler returns the handler of the pages and their files: /vnc.html,
// /spice.html, /serial.html, /static/… and /vendor/…, and of /refusal,
// the reasons refusals kept (nil: none); anything else is 404. Each
// answer has the security headers (ContentSecurityPolicy, nosniff, no
// referrer) and is revalidated (no-cache, with an ETag).
func Handler(refusals *Refusals) http.Handler { return handler{refusals} }

type handler struct{ refusals *Refusals }

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.headers(w, r.URL.Path)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: the console pages answer GET", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path == "/refusal" {
		h.refusals.serve(w, r)
		return
	}
	h.file(w, r)
}

// headers sets the security and caching headers of every answer.
func (handler) headers(w http.ResponseWriter, path string) {
	h := w.Header()
	if path == "/"+Pages["serial"] {
		h.Set("Content-Security-Policy", SerialContentSecurityPolicy)
	} else {
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
}

// file serves the embedded file the request names.
func (handler) file(w http.ResponseWriter, r *http.Request) {
	name, ok := fileName(r.URL.Path)
	var f *file
	if ok {
		f, ok = lookup(name)
	}
	if !ok {
		http.Error(w, "not found: the console pages are vnc.html, spice.html and serial.html", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.data))
}

// fileName maps a request path to the embedded file it names, or to a
// page's name.
func fileName(p string) (string, bool) {
	p = strings.TrimPrefix(p, "/")
	if path.Clean("/"+p) != "/"+p {
		return "", false // no dot segments, no doubled slashes
	}
	if _, ok := pages[p]; ok {
		return p, true
	}
	if p != "static/page.html" && (strings.HasPrefix(p, "static/") || strings.HasPrefix(p, "vendor/")) {
		return p, true
	}
	return "", false
}

type file struct {
	data        []byte
	contentType string
	etag        string
}

var (
	cacheMu sync.Mutex
	cache   = map[string]*file{}
)

// lookup reads an embedded file, or renders a page, once, with its type
// and ETag.
func lookup(name string) (*file, bool) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if f, ok := cache[name]; ok {
		return f, true
	}
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		return nil, false // licences and READMEs are in the source, not served
	}
	read := fs.ReadFile
	if _, ok := pages[name]; ok {
		read = func(fs.FS, string) ([]byte, error) { return renderPage(name) }
	}
	data, err := read(files, name)
	if err != nil {
		return nil, false
	}
	sum := sha256.Sum256(data)
	f := &file{data: data, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	cache[name] = f
	return f, true
}

// contentTypes are the types of the files served (nosniff: they must be
// right); other files are not served.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".mjs":  "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Link returns the browser link of a console of kind (vnc, spice, serial
// or console) on the proxy at base (https://host[:port][/prefix], or a
// wss:// proxy URL, which becomes https://): base/PAGE#token=TOKEN. The
// token is in the fragment, which the browser keeps to itself.
func Link(base, kind, token string) (string, error) {
	page, ok := Pages[kind]
	if !ok {
		return "", &KindError{Kind: kind}
	}
	return pageLink(base, page, token)
}

// pageLink is base/page#token=TOKEN (see Link).
func pageLink(base, page, token string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "wss":
		u.Scheme = "https"
	case "ws":
		u.Scheme = "http"
	}
	// The websocket endpoint's own path names the prefix too.
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/websockify"), "/") + "/" + page
	u.RawPath, u.RawQuery, u.Fragment, u.RawFragment = "", "", "", ""
	return u.String() + "#" + url.Values{"token": {token}}.Encode(), nil
}

// KindError is a console kind that has no page.
type KindError struct{ Kind string }

func (e *KindError) Error() string {
	return "no console page for type " + e.Kind + ": want vnc, spice, serial or console"
}
