package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// TestSingleUseStaticRestart: with --tokens and --single-use, a malformed
// websocket upgrade does not spend a token (issue 10, point 2), and a
// spent token stays spent after the proxy restarts (point 3): the spent
// set is in tokens.json.spent, as hashes.
func TestSingleUseStaticRestart(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		"once-1": {Type: "console", Address: addr},
		"once-2": {Type: "console", Address: addr},
		"once-3": {Type: "console", Address: addr},
	})
	args := []string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens, "--single-use"}
	ca := filepath.Join(dir, "ca-cert.pem")
	session := func(p *daemon, tok string) {
		t.Helper()
		c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, tok))
		waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
		c.stdin.Close()
		if code := c.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d; stderr %q", code, c.errb.String())
		}
	}
	refused := func(p *daemon, tok string) {
		t.Helper()
		r := run(t, strings.NewReader(""), "serial", "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, tok))
		if r.code != cmdutil.ExitRefused {
			t.Fatalf("spent token: exit %d, want %d; stderr %q", r.code, cmdutil.ExitRefused, r.stderr)
		}
		checkOneLine(t, r.stderr, "unknown token")
	}

	p := startDaemon(t, args...)
	session(p, "once-1")
	if status := malformedUpgrade(t, p.addr, ca, "once-2"); status != http.StatusBadRequest {
		t.Fatalf("malformed upgrade: status %d, want 400", status)
	}
	session(p, "once-2")
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the proxy did not stop on SIGTERM")
	}
	spent, err := os.ReadFile(tokens + ".spent")
	if err != nil || strings.Contains(string(spent), "once-") {
		t.Fatalf("spent-token file: %v\n%s", err, spent)
	}

	p = startDaemon(t, args...)
	refused(p, "once-1")
	refused(p, "once-2")
	session(p, "once-3")
}

// malformedUpgrade sends a websocket upgrade without Sec-WebSocket-Key
// carrying token and returns the status.
func malformedUpgrade(t *testing.T, addr, caFile, token string) int {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/websockify", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
