package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// get fetches path from h mounted under prefix, as a front proxy that
// strips it would.
func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func TestHeaders(t *testing.T) {
	for _, p := range []string{"/vnc.html", "/spice.html", "/serial.html", "/static/common.js", "/nope", "/vendor/novnc/LICENSE.txt"} {
		resp := get(t, Handler(nil), p)
		h := resp.Header
		want := ContentSecurityPolicy
		if p == "/serial.html" {
			want = SerialContentSecurityPolicy
		}
		if got := h.Get("Content-Security-Policy"); got != want {
			t.Errorf("%s: Content-Security-Policy = %q, want %q", p, got, want)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"} {
			if got := h.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", p, k, got, want)
			}
		}
	}
	for _, policy := range []string{ContentSecurityPolicy, SerialContentSecurityPolicy} {
		for _, d := range []string{"default-src 'self';", "script-src 'self';", "connect-src 'self';", "frame-ancestors 'none'", "object-src 'none';"} {
			if !strings.Contains(policy, d) {
				t.Errorf("%q lacks %q", policy, d)
			}
		}
		if strings.Contains(policy, "unsafe-eval") || strings.Count(policy, "unsafe-inline") > 1 {
			t.Errorf("the policy allows evaluated or inline script: %s", policy)
		}
	}
	if !strings.Contains(ContentSecurityPolicy, "style-src 'self';") || !strings.Contains(SerialContentSecurityPolicy, "style-src 'self' 'unsafe-inline';") {
		t.Errorf("inline styles: want them refused but on the serial page (xterm.js's)")
	}
}

func TestNotServed(t *testing.T) {
	for _, p := range []string{"/", "/index.html", "/vendor/novnc/LICENSE.txt", "/vendor/README.md", "/static/../web.go",
		"/static//common.js", "/vendor/", "/websockify", "/vendor/xterm/package.json", "/static/page.html"} {
		if resp := get(t, Handler(nil), p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	rec := httptest.NewRecorder()
	Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/vnc.html", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
}

var refRE = regexp.MustCompile(`(?:href|src)="([^"]*)"|(?:\bfrom|\bimport)\s*['"](\.{1,2}/[^'"\n]+\.m?js)['"]`)

// TestPrefix loads every page under a path prefix, as behind a front
// proxy mapping /consoles/ to the proxy, and follows every reference of
// the pages and of their own scripts (static imports): each is relative,
// and resolves under the prefix to a file served as its type.
func TestPrefix(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/consoles/", http.StripPrefix("/consoles", Handler(nil)))
	base, _ := url.Parse("https://proxy.example/consoles/")
	seen := map[string]bool{}
	var follow func(u *url.URL, from string)
	follow = func(u *url.URL, from string) {
		if seen[u.Path] {
			return
		}
		seen[u.Path] = true
		resp := get(t, mux, u.Path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s (from %s): %s", u.Path, from, resp.Status)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		ct := resp.Header.Get("Content-Type")
		if !strings.HasPrefix(ct, "text/html") && !strings.HasPrefix(ct, "text/javascript") {
			return
		}
		for _, m := range refRE.FindAllStringSubmatch(string(body), -1) {
			ref := m[1] + m[2]
			if ref == "data:," {
				continue
			}
			if strings.HasPrefix(ref, "/") || strings.Contains(ref, "//") {
				t.Errorf("%s refers to %q: want a relative URL", u.Path, ref)
				continue
			}
			next := u.ResolveReference(&url.URL{Path: ref})
			if !strings.HasPrefix(next.Path, "/consoles/") {
				t.Errorf("%s: %q leaves the prefix: %s", u.Path, ref, next.Path)
				continue
			}
			follow(next, u.Path)
		}
	}
	for _, page := range []string{"vnc.html", "spice.html", "serial.html"} {
		follow(base.ResolveReference(&url.URL{Path: page}), "the link")
	}
	for _, want := range []string{"/consoles/vendor/novnc/core/rfb.js", "/consoles/vendor/spice-html5/src/main.js",
		"/consoles/vendor/xterm/lib/xterm.mjs", "/consoles/vendor/xterm-addon-fit/lib/addon-fit.mjs",
		"/consoles/vendor/xterm/css/xterm.css", "/consoles/vendor/novnc/vendor/pako/lib/zlib/inflate.js"} {
		if !seen[want] {
			t.Errorf("the pages do not load %s", want)
		}
	}
	t.Logf("%d files reached from the pages", len(seen))
}

// TestNoTokenInURLs: the pages put the token in a cookie, never in a URL:
// no script builds a query with it, and the websocket URL is bare.
func TestNoTokenInURLs(t *testing.T) {
	b, err := files.ReadFile("static/common.js")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, bad := range []string{"?token", "searchParams.set", "&token"} {
		if strings.Contains(src, bad) {
			t.Errorf("common.js holds %q", bad)
		}
	}
	for _, want := range []string{"u.search = ''", "history.replaceState", "cookie('token', token, ", "document.cookie = `${name}=${value}; Path=${path}", "SameSite=Strict", "; Secure"} {
		if !strings.Contains(src, want) {
			t.Errorf("common.js lacks %q", want)
		}
	}
}

func TestLink(t *testing.T) {
	for _, c := range []struct{ base, kind, token, want string }{
		{"wss://proxy.example:6443", "vnc", "s3cret", "https://proxy.example:6443/vnc.html#token=s3cret"},
		{"wss://proxy.example:6443/", "spice", "a+b/c=", "https://proxy.example:6443/spice.html#token=a%2Bb%2Fc%3D"},
		{"https://front.example/consoles/", "serial", "tok3", "https://front.example/consoles/serial.html#token=tok3"},
		{"wss://front.example/consoles/websockify", "console", "tok4", "https://front.example/consoles/serial.html#token=tok4"},
		{"ws://127.0.0.1:6080", "vnc", "tok5", "http://127.0.0.1:6080/vnc.html#token=tok5"},
	} {
		got, err := Link(c.base, c.kind, c.token)
		if err != nil || got != c.want {
			t.Errorf("Link(%q, %q, %q) = %q, %v; want %q", c.base, c.kind, c.token, got, err, c.want)
		}
		u, err := url.Parse(got)
		if err != nil || u.RawQuery != "" || strings.Contains(u.Path, c.token) {
			t.Errorf("%s: the token is outside the fragment", got)
		}
	}
	if _, err := Link("wss://p", "rdp", "t"); err == nil {
		t.Errorf("Link with type rdp: no error")
	}
}

// TestRefusals: a refused request's reason is kept under its refusal
// cookie and served once asked for by that id; other ids, malformed ids
// and requests without the cookie get nothing.
func TestRefusals(t *testing.T) {
	rs := &Refusals{}
	var answered []string
	eh := rs.Wrap(func(w http.ResponseWriter, r *http.Request, err error) { answered = append(answered, err.Error()) })
	const id = "0123456789abcdef0123456789abcdef"
	refuse := func(cookie, reason string) {
		r := httptest.NewRequest(http.MethodGet, "/websockify", nil)
		if cookie != "" {
			r.Header.Set("Cookie", "token=tok; refusal="+cookie)
		}
		eh(httptest.NewRecorder(), r, errors.New(reason))
	}
	refuse(id, "unknown token")
	refuse("", "no token")
	refuse("../../etc", "origin not allowed")
	if len(answered) != 3 {
		t.Fatalf("the wrapped handler answered %d of 3 refusals", len(answered))
	}
	h := Handler(rs)
	for _, c := range []struct {
		path   string
		status int
		body   string
	}{
		{"/refusal?id=" + id, 200, "unknown token\n"},
		{"/refusal?id=ffffffffffffffffffffffffffffffff", 404, ""},
		{"/refusal?id=../../etc", 404, ""},
		{"/refusal", 404, ""},
	} {
		resp := get(t, h, c.path)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != c.status || (c.body != "" && string(body) != c.body) {
			t.Errorf("GET %s: %d %q, want %d %q", c.path, resp.StatusCode, body, c.status, c.body)
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no policy", c.path)
		}
	}
	if resp := get(t, Handler(nil), "/refusal?id="+id); resp.StatusCode != 404 {
		t.Errorf("without Refusals: %s", resp.Status)
	}

	// Old reasons expire; the table is bounded.
	now := time.Now()
	rs.add("ffffffffffffffffffffffffffffffff", "old", now.Add(-2*refusalTTL))
	if _, ok := rs.reason("ffffffffffffffffffffffffffffffff", now); ok {
		t.Errorf("an expired reason is still served")
	}
	for i := range refusalMax + 10 {
		rs.add(fmt.Sprintf("%032x", i), "r", now)
	}
	if n := len(rs.byID); n > refusalMax || len(rs.order) != n {
		t.Errorf("%d reasons kept (%d in order), want at most %d", n, len(rs.order), refusalMax)
	}
}
