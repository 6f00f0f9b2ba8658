package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// uriEncode percent-encodes every byte but letters and digits, as
// `jq -rn --arg t "$TOKEN" '$t|@uri'` does.
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// curl runs Debian's curl with args and returns its stdout, its stderr
// and its exit code.
func curl(t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--max-time", "20"}, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("curl: %v", err)
	}
	return out.String(), errb.String(), code
}

// TestResolverDaemonCurlSlashTokens: the README's curl example against the
// real "server resolver --tokens FILE" over TLS with client certificates,
// for tokens with "/", "+" and "=" (as base64 makes them), sent raw and
// percent-encoded.
func TestResolverDaemonCurlSlashTokens(t *testing.T) {
	curlBin := qemutest.Need(t, "curl")[0]
	dir := pki(t)
	tokens := map[string]resolver.Console{
		"q8Zr/1kD+wUe9x/TmV3bP0aLc2Hs5fGn": {Type: "vnc", Address: "127.0.0.1:5901", Password: "vnc-secret"},
		"AbC+dEf/gHi=j//kL+mN/oP==":        {Type: "serial", Address: "127.0.0.1:4555", Insecure: true},
	}
	tokFile := writeTokens(t, tokens)
	d := startDaemon(t, "server", "resolver", "--listen", "127.0.0.1:0",
		"--tls-dir", dir, "--require-client-cert", "--tokens", tokFile)
	creds := []string{
		"--cacert", filepath.Join(dir, "ca-cert.pem"),
		"--cert", filepath.Join(dir, "client-cert.pem"),
		"--key", filepath.Join(dir, "client-key.pem"),
	}
	base := "https://" + d.addr + "/consoleresolver/token/"

	for i, tok := range []string{"q8Zr/1kD+wUe9x/TmV3bP0aLc2Hs5fGn", "AbC+dEf/gHi=j//kL+mN/oP=="} {
		con := tokens[tok]
		for _, sp := range []struct{ name, path string }{
			{"raw", tok},
			{"percent-encoded", uriEncode(tok)},
		} {
			t.Run(fmt.Sprintf("token%d/%s", i, sp.name), func(t *testing.T) {
				out, errOut, code := curl(t, curlBin, append(creds, "-w", "\n%{http_code}", base+sp.path)...)
				if code != 0 {
					t.Fatalf("curl exited %d: %s", code, errOut)
				}
				body, status, _ := strings.Cut(out, "\n")
				if status != "200" {
					t.Fatalf("HTTP %s, body %q", status, body)
				}
				var got resolver.Console
				if err := json.Unmarshal([]byte(body), &got); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				if got != con {
					t.Errorf("got %+v, want %+v", got, con)
				}
			})
		}
	}

	t.Run("unknown token with slash", func(t *testing.T) {
		out, errOut, code := curl(t, curlBin, append(creds, "-w", "\n%{http_code}", base+"q8Zr/1kD")...)
		if code != 0 {
			t.Fatalf("curl exited %d: %s", code, errOut)
		}
		if body, status, _ := strings.Cut(out, "\n"); status != "404" || body != `{"error":"unknown token"}` {
			t.Errorf("HTTP %s, body %q; want 404 unknown token", status, body)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		out, _, code := curl(t, curlBin, "--cacert", filepath.Join(dir, "ca-cert.pem"),
			"-w", "\n%{http_code}", base+uriEncode("AbC+dEf/gHi=j//kL+mN/oP=="))
		if code == 0 && strings.HasSuffix(out, "\n200") {
			t.Errorf("answered without a client certificate: %q", out)
		}
	})

	logs := d.log.String()
	for tok := range tokens {
		for _, s := range []string{tok, uriEncode(tok), "vnc-secret"} {
			if strings.Contains(logs, s) {
				t.Errorf("the daemon's log holds a token or password:\n%s", logs)
			}
		}
	}
	if !strings.Contains(logs, "token_fp="+resolver.Fingerprint("AbC+dEf/gHi=j//kL+mN/oP==")) {
		t.Errorf("the daemon's log lacks the resolved token's fingerprint:\n%s", logs)
	}
	if strings.Contains(logs, "readable by") {
		t.Errorf("a 0600 token file got a warning:\n%s", logs)
	}
}
