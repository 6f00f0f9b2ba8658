package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// TestEndRevokedSessions: with --end-revoked-sessions, removing a token
// from the token file ends the session it opened at the next reload
// (issue 10, point 13); without the flag the session goes on. The audit
// log says who killed it, and the metrics count it as killed.
func TestEndRevokedSessions(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		"Revoked-Token-1d7e": {Type: "console", Address: addr},
		"Kept-Token-9a2c":    {Type: "console", Address: addr},
	})
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir,
		"--tokens", tokens, "--end-revoked-sessions", "--audit-log", auditPath, "--metrics-listen", "127.0.0.1:0")
	c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "Revoked-Token-1d7e"))
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })

	b, err := json.Marshal(map[string]resolver.Console{"Kept-Token-9a2c": {Type: "console", Address: addr}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokens, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 30*time.Second) // the reload polls every 2 s
	waitFor(t, 10*time.Second, "the log line", func() bool {
		return strings.Contains(p.log.String(), "ended the sessions of revoked tokens")
	})
	waitFor(t, 10*time.Second, "the killed session in /metrics", func() bool {
		return scrape(t, metricsAddr(t, p)).value(t, "virtconsole_sessions_ended_total", "kind", "console", "outcome", "killed") == 1
	})
	var got []string
	for _, e := range readAudit(t, auditPath) {
		got = append(got, strings.TrimSpace(str(e["event"])+" "+str(e["outcome"])+" "+str(e["killed_by"])))
	}
	if want := "session_start ok|session_killed  token revoked|session_end killed"; strings.Join(got, "|") != want {
		t.Fatalf("audit events %q, want %q", strings.Join(got, "|"), want)
	}
	audit, _ := os.ReadFile(auditPath)
	for _, tok := range []string{"Revoked-Token-1d7e", "Kept-Token-9a2c"} {
		if strings.Contains(p.log.String(), tok) || strings.Contains(string(audit), tok) {
			t.Fatalf("token %s in the log or the audit log:\n%s\n%s", tok, p.log.String(), audit)
		}
	}
}
