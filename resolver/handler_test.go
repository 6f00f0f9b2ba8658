package resolver

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/protocols"
)

func TestFingerprint(t *testing.T) {
	fp := Fingerprint(tokA)
	if len(fp) != 8 || strings.Contains(tokA, fp) || fp != Fingerprint(tokA) || fp == Fingerprint(tokB) {
		t.Fatalf("Fingerprint = %q", fp)
	}
}

type handlerResult struct {
	status int
	header http.Header
	body   string
}

func serve(t *testing.T, h http.Handler, method, target string) handlerResult {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	return handlerResult{rec.Code, rec.Result().Header, string(body)}
}

func TestHandler(t *testing.T) {
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	static, err := NewStatic(map[string]Console{
		tokA: {Type: "vnc", Address: "127.0.0.1:5901", Password: "x"},
		tokB: {Type: "serial", Address: "127.0.0.1:4555", Insecure: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	failing := ResolverFunc(func(_ context.Context, token string) (protocols.Target, error) {
		if token == tokC {
			return protocols.Target{}, errors.Join(errors.New("backend lost while resolving "+token), ErrUnavailable)
		}
		return protocols.Target{}, errors.New("boom resolving " + token)
	})
	h := NewHandler(static, logger)
	hf := NewHandler(failing, logger)

	cases := []struct {
		name       string
		h          http.Handler
		method     string
		target     string
		status     int
		body       string // exact, if set
		bodyAbsent string
	}{
		{"mounted", h, "GET", "/consoleresolver/token/" + tokA, 200,
			`{"type":"vnc","address":"127.0.0.1:5901","insecure":false,"tlsTunnel":false,"password":"x"}`, ""},
		{"root", h, "GET", "/token/" + tokB, 200,
			`{"type":"serial","address":"127.0.0.1:4555","insecure":true,"tlsTunnel":false}`, ""},
		{"deep mount", h, "GET", "/a/b/c/token/" + tokB, 200, "", ""},
		{"escaped token", h, "GET", "/token/" + url.PathEscape(tokA), 200, "", ""},
		{"unknown", h, "GET", "/consoleresolver/token/" + tokC, 404, `{"error":"unknown token"}`, ""},
		{"empty token slash", h, "GET", "/consoleresolver/token/", 400, `{"error":"empty token"}`, ""},
		{"empty token", h, "GET", "/consoleresolver/token", 400, `{"error":"empty token"}`, ""},
		{"post", h, "POST", "/consoleresolver/token/" + tokA, 405, "", "127.0.0.1"},
		{"delete", h, "DELETE", "/token/" + tokA, 405, "", "127.0.0.1"},
		{"head", h, "HEAD", "/token/" + tokA, 200, "", ""},
		{"healthz", h, "GET", "/healthz", 200, "ok", ""},
		{"mounted healthz", h, "GET", "/consoleresolver/healthz", 200, "ok", ""},
		{"other path", h, "GET", "/statusz", 404, "", "127.0.0.1"},
		{"token named healthz", h, "GET", "/token/healthz", 404, `{"error":"unknown token"}`, ""},
		{"unavailable", hf, "GET", "/token/" + tokC, 503, `{"error":"resolver unavailable"}`, "SECRET"},
		{"internal", hf, "GET", "/token/" + tokA, 500, `{"error":"internal error"}`, "SECRET"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := serve(t, tc.h, tc.method, tc.target)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d (body %q)", r.status, tc.status, r.body)
			}
			if tc.body != "" && r.body != tc.body {
				t.Errorf("body = %q, want %q", r.body, tc.body)
			}
			if tc.bodyAbsent != "" && strings.Contains(r.body, tc.bodyAbsent) {
				t.Errorf("body %q contains %q", r.body, tc.bodyAbsent)
			}
			if tc.status != 200 || !strings.HasSuffix(tc.name, "healthz") {
				if ct := r.header.Get("Content-Type"); ct != "application/json" && tc.method != "HEAD" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			if tc.status == 405 && r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", r.header.Get("Allow"))
			}
			if tc.status == 200 && strings.Contains(tc.target, "token/") && r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
			}
			if tc.status == 200 && tc.method == "GET" && strings.Contains(tc.target, "token/") {
				var c Console
				if err := json.Unmarshal([]byte(r.body), &c); err != nil {
					t.Fatalf("body %q: %v", r.body, err)
				}
				if _, err := c.Target(); err != nil {
					t.Errorf("answer does not validate: %v", err)
				}
			}
		})
	}

	out := logs.String()
	t.Logf("logs:\n%s", out)
	for _, tok := range []string{tokA, tokB, tokC, "SECRET"} {
		if strings.Contains(out, tok) {
			t.Errorf("logs contain a token")
		}
	}
	for _, want := range []string{"token_fp=" + Fingerprint(tokA), "token_fp=" + Fingerprint(tokC), "unknown token", "resolver unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	if strings.Contains(out, `password`) || strings.Contains(out, `"x"`) {
		t.Errorf("logs may hold a password")
	}
}
