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
// (issue 10, point 13); without the flag the session goes on.
func TestEndRevokedSessions(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		"revoked": {Type: "console", Address: addr},
		"kept":    {Type: "console", Address: addr},
	})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir,
		"--tokens", tokens, "--end-revoked-sessions")
	c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "revoked"))
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })

	b, err := json.Marshal(map[string]resolver.Console{"kept": {Type: "console", Address: addr}})
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
	if strings.Contains(p.log.String(), "revoked\"") {
		t.Fatalf("a token in the log:\n%s", p.log.String())
	}
}
