package resolver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzParseTokenFile feeds token files to the parser LoadFile and Reload
// use: no panic; an error is one line and never shows a token; a file
// that parses gives a table in which every key of the JSON object looks
// up its own console.
//
// "Never shows a token" is checked for tokens of at least 4 bytes with a
// '~' in them: no fixed text of an error has one, so a '~' token in an
// error can only have been copied from the file.
func FuzzParseTokenFile(f *testing.F) {
	for _, s := range []string{
		`{"s3cret": {"type":"serial","address":"127.0.0.1:4555","insecure":false}}`,
		`{"a~tok": {"type":"vnc","address":"127.0.0.1:5901"}, "b~tok": {"type":"spice","address":"[::1]:5930","tls_tunnel":true,"password":"pw"}}`,
		`{"t~ok~en": {"type":"vnc","address":"host-t~ok~en:5901"}}`,
		`{"t~ok~en": {"type":"t~ok~en","address":"127.0.0.1:1"}}`,
		`{"t~ok~en": {"type":"vnc","address":"127.0.0.1:99999"}}`,
		`{"x~yz": {"type":"vnc","address":"127.0.0.1:5901"}, "x~yz": {"type":"vnc","address":"127.0.0.1:5902"}}`,
		`{"x~yz": {"type":"vnc","address":"127.0.0.1:5901",}}`,
		`{"x~y` + "\x01" + `z": {}}`,
		`{"": {"type":"vnc","address":"127.0.0.1:5901"}}`,
		`{"x~yz": {"type":1}}`, `{"x~yz": "vnc"}`, `[]`, `"x~yz"`, ``, `{`, `{"a\u007e\u0062c": {"type":"vnc","address":"a~bc:1"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return // bounded cost per input; the parser is linear
		}
		entries, err := parseTokenFile(data)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if raws, rerr := rawEntries(data); rerr == nil {
				for _, re := range raws {
					if len(re.token) >= 4 && strings.Contains(re.token, "~") && strings.Contains(msg, re.token) {
						t.Fatalf("error shows token %q: %s", re.token, msg)
					}
				}
			}
			return
		}
		var want map[string]Console
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("parsed, but json.Unmarshal fails: %v", err)
		}
		if len(entries) != len(want) {
			t.Fatalf("%d entries from an object with %d keys", len(entries), len(want))
		}
		var table TokenTable[staticFile, Console]
		var list []Token[Console]
		for _, e := range entries {
			list = append(list, Token[Console]{Token: e.Token, Value: FromTarget(e.Value)})
		}
		table.Set(staticFile{}, list)
		for token, c := range want {
			got, ok := table.Lookup(token)
			if !ok {
				t.Fatalf("a token of the file is not in the table")
			}
			wt, err := c.Target()
			if err != nil {
				t.Fatalf("parsed, but an entry is invalid: %v", err)
			}
			if w := FromTarget(wt); got != w {
				t.Fatalf("token looks up %+v, want %+v", got, w)
			}
		}
	})
}

// answerTransport answers every request with a fixed status line, content
// type and body, as an external resolver could: no network, so the
// fuzzer runs at the speed of the client's own parsing.
type answerTransport struct {
	code  int
	text  string // reason phrase
	ctype string
	body  []byte
}

func (a *answerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{}
	if a.ctype != "" {
		h.Set("Content-Type", a.ctype)
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", a.code, a.text), StatusCode: a.code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(a.body)), ContentLength: int64(len(a.body)),
		Request: r,
	}, nil
}

// FuzzClientAnswer feeds external resolvers' answers (status, reason
// phrase, content type, body) to Client.Resolve, for a token the answer
// may echo: no panic; an error is one line and never shows the token; a
// success is a valid console.
//
// Tokens are fuzzed too, drawn from what NewToken and operators use
// (8 to 64 letters, digits, '-' and '_').
func FuzzClientAnswer(f *testing.F) {
	tok := "s3cret-Token_42"
	for _, s := range []struct {
		code        int
		text, ctype string
		body        string
	}{
		{200, "OK", "application/json", `{"type":"vnc","address":"127.0.0.1:5901"}`},
		{200, "OK", "", `{"type":"serial","address":"[::1]:4555","insecure":true}`},
		{200, "OK", "application/json", `{"type":"vnc","address":"` + tok + `:5901"}`},
		{200, "OK", "application/json", `{"type":"` + tok + `","address":"127.0.0.1:1"}`},
		{200, "OK", "application/json; charset=" + tok, `{}`},
		{200, "OK", "text/html", `<html>` + tok},
		{404, "Not Found", "application/json", `{"error":"no such token ` + tok + `"}`},
		{503, "Service Unavailable", "text/plain", "down for " + tok + "\nsecond line"},
		{502, "Bad Gateway", "application/json", `{"error":"` + strings.Repeat("é", 150) + `"}`},
		{301, "Moved", "", ""},
	} {
		f.Add(s.code, s.text, s.ctype, []byte(s.body), tok)
	}
	f.Fuzz(func(t *testing.T, code int, text, ctype string, body []byte, token string) {
		if code < 100 || code > 999 || len(body) > MaxResponseSize+16 || !plausibleToken(token) {
			return
		}
		// An HTTP status line and header value end at CR or LF.
		if strings.ContainsAny(text+ctype, "\r\n") {
			return
		}
		hc := &http.Client{Transport: &answerTransport{code, text, ctype, body}}
		c, err := NewClient("http://resolver.test/api/", hc)
		if err != nil {
			t.Fatal(err)
		}
		target, err := c.Resolve(context.Background(), token)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if strings.Contains(msg, token) {
				t.Fatalf("error shows the token %q: %s", token, msg)
			}
			return
		}
		if code != http.StatusOK {
			t.Fatalf("HTTP %d resolved to %+v", code, target)
		}
		if _, err := FromTarget(target).Target(); err != nil {
			t.Fatalf("resolved to an invalid console %+v: %v", target, err)
		}
	})
}

func plausibleToken(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
