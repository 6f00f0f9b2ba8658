package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/virtconsole/virtconsole/protocols"
)

// Tokens as `head -c 24 /dev/urandom | base64` and other generators make
// them: with "/", "+" and "=", a doubled or leading slash, and one that
// contains the word the handler looks for.
var slashTokens = map[string]Console{
	"q8Zr/1kD+wUe9x/TmV3bP0aLc2Hs5fGn": {Type: "vnc", Address: "127.0.0.1:5901", Password: "x"},
	"AbC+dEf/gHi=":                     {Type: "serial", Address: "127.0.0.1:4555", Insecure: true},
	"pl+us==":                          {Type: "spice", Address: "127.0.0.1:5902"},
	"/lead//double/":                   {Type: "serial", Address: "127.0.0.1:4557"},
	"x/token/y+SECRET":                 {Type: "vnc", Address: "127.0.0.1:5903"},
}

// spaceToken differs from a slashTokens entry by a space for its "+": a
// "+" in the path must not be taken for a space.
const spaceToken = "pl us=="

var spaceConsole = Console{Type: "serial", Address: "127.0.0.1:4556"}

func sortedTokens() []string {
	toks := make([]string, 0, len(slashTokens))
	for tok := range slashTokens {
		toks = append(toks, tok)
	}
	sort.Strings(toks)
	return toks
}

// percentEncode escapes every byte but letters and digits, as `jq @uri`
// does; lower gives lower-case hex digits, which are as valid.
func percentEncode(s string, lower bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
			continue
		}
		if lower {
			fmt.Fprintf(&b, "%%%02x", c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// getRaw sends GET with exactly path as the request target and returns
// the status and body. When reachesHandler, it fails if the handler saw
// another request target (seen holds the last one it saw).
func getRaw(t *testing.T, srv *httptest.Server, seen *atomic.Value, path string, reachesHandler bool) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = path // sent as is, not re-escaped
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET: %v", strings.ReplaceAll(err.Error(), path, "[path]"))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got, _ := seen.Load().(string); reachesHandler && got != path {
		t.Fatalf("the server saw another request target than was sent")
	}
	return resp.StatusCode, string(body)
}

func TestHandlerTokenPath(t *testing.T) {
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	all := map[string]Console{spaceToken: spaceConsole}
	for tok, con := range slashTokens {
		all[tok] = con
	}
	static, err := NewStatic(all)
	if err != nil {
		t.Fatal(err)
	}
	var seen atomic.Value
	h := NewHandler(static, logger)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.RequestURI)
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()

	spellings := []struct {
		name   string
		encode func(string) string
	}{
		{"raw", func(s string) string { return s }},
		{"percent-encoded", func(s string) string { return percentEncode(s, false) }},
		{"percent-encoded lower-case", func(s string) string { return percentEncode(s, true) }},
		{"slashes encoded", func(s string) string { return strings.ReplaceAll(s, "/", "%2F") }},
		{"plus and equals encoded", func(s string) string {
			return strings.NewReplacer("+", "%2B", "=", "%3D").Replace(s)
		}},
	}
	for i, tok := range sortedTokens() {
		want, _ := slashTokens[tok].Target()
		for _, base := range []string{"/consoleresolver/token/", "/token/", "/a/b/token/"} {
			for _, sp := range spellings {
				t.Run(fmt.Sprintf("token%d%s%s", i, strings.TrimSuffix(base, "token/"), sp.name), func(t *testing.T) {
					status, body := getRaw(t, srv, &seen, base+sp.encode(tok), true)
					if status != http.StatusOK {
						t.Fatalf("status %d, body %q", status, body)
					}
					got := decodeTarget(t, body)
					if !reflect.DeepEqual(got, want) {
						t.Errorf("resolved to %+v, want %+v", got, want)
					}
				})
			}
		}
	}

	for _, tc := range []struct {
		name, path string
		status     int
		body       string
		// net/http itself answers 400 for escapes it cannot parse.
		handler bool
	}{
		{"unknown with slash", "/consoleresolver/token/q8Zr/1kD", 404, `{"error":"unknown token"}`, true},
		{"trailing slash added", "/consoleresolver/token/AbC+dEf/gHi=/", 404, `{"error":"unknown token"}`, true},
		{"malformed escape", "/token/AbC%2+dEf-SECRET", 400, "", false},
		{"bare percent", "/token/50%-SECRET", 400, "", false},
		{"empty", "/token/", 400, `{"error":"empty token"}`, true},
		{"no token", "/consoleresolver/token", 400, `{"error":"empty token"}`, true},
		{"token ending in healthz", "/token/a/healthz", 404, `{"error":"unknown token"}`, true},
		{"healthz", "/consoleresolver/healthz", 200, "ok", true},
		{"tokens segment", "/tokens/AbC+dEf/gHi=", 404, `{"error":"not found"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := getRaw(t, srv, &seen, tc.path, tc.handler)
			if status != tc.status {
				t.Fatalf("status %d, want %d (body %q)", status, tc.status, body)
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("body %q, want %q", body, tc.body)
			}
			if strings.Contains(body, "SECRET") || strings.Contains(body, "dEf") {
				t.Errorf("the answer echoes the token: %q", body)
			}
		})
	}
	t.Run("plus is not a space", func(t *testing.T) {
		for path, con := range map[string]Console{
			"/token/pl+us==":       slashTokens["pl+us=="],
			"/token/pl%2Bus==":     slashTokens["pl+us=="],
			"/token/pl%20us%3D%3D": spaceConsole,
		} {
			status, body := getRaw(t, srv, &seen, path, true)
			if status != http.StatusOK {
				t.Fatalf("status %d, body %q", status, body)
			}
			if want, _ := con.Target(); !reflect.DeepEqual(decodeTarget(t, body), want) {
				t.Errorf("%s resolved to the wrong console", path)
			}
		}
	})

	out := logs.String()
	for tok := range slashTokens {
		for _, s := range []string{tok, percentEncode(tok, false), strings.ReplaceAll(tok, "/", "%2F")} {
			if strings.Contains(out, s) {
				t.Errorf("logs contain a token")
			}
		}
	}
	if strings.Contains(out, "SECRET") || strings.Contains(out, "dEf") {
		t.Errorf("logs contain part of a token")
	}
	if !strings.Contains(out, "token_fp="+Fingerprint("AbC+dEf/gHi=")) {
		t.Errorf("logs lack the fingerprint of a resolved token:\n%s", out)
	}
}

func decodeTarget(t *testing.T, body string) protocols.Target {
	t.Helper()
	var c Console
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	tg, err := c.Target()
	if err != nil {
		t.Fatalf("answer does not validate: %v", err)
	}
	return tg
}

// TestClientHandlerSlashTokens: the proxy's REST client (which escapes the
// whole token) reaches the handler with every kind of token, over real
// HTTP and HTTPS on loopback, mounted at the root and under a ServeMux.
func TestClientHandlerSlashTokens(t *testing.T) {
	static, err := NewStatic(slashTokens)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/consoleresolver/", NewHandler(static, nil))
	for _, tc := range []struct {
		name string
		h    http.Handler
		base string
		tls  bool
	}{
		{"root", NewHandler(static, nil), "/", false},
		{"mounted", NewHandler(static, nil), "/consoleresolver/", true},
		{"mux", mux, "/consoleresolver", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(tc.h)
			if tc.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			c, err := NewClient(srv.URL+tc.base, srv.Client())
			if err != nil {
				t.Fatal(err)
			}
			for tok, con := range slashTokens {
				got, err := c.Resolve(context.Background(), tok)
				checkNoToken(t, err)
				if err != nil {
					t.Fatalf("Resolve: %v", strings.ReplaceAll(err.Error(), tok, "[token]"))
				}
				if want, _ := con.Target(); !reflect.DeepEqual(got, want) {
					t.Errorf("got %+v, want %+v", got, want)
				}
			}
			_, err = c.Resolve(context.Background(), "q8Zr/1kD")
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("a prefix of a token: err = %v, want not found", err)
			}
		})
	}
}
