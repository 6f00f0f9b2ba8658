package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// TestRefusals: every way a user can be refused gives the documented
// exit code and one line that says what is wrong, and the proxy keeps
// serving other sessions afterwards.
func TestRefusals(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	otherCA := pki(t) // a second, unrelated CA
	_, good := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	_, foreign := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: otherCA, VerifyPeer: false, Monitor: true})
	closedPort := "127.0.0.1:" + strconv.Itoa(qemutest.FreePort(t))
	tokens := writeTokens(t, map[string]resolver.Console{
		"Good-Token-123": {Type: "console", Address: good},
		"foreign-ca":     {Type: "serial", Address: foreign},
		"nobody-home":    {Type: "serial", Address: closedPort},
		"cleartext":      {Type: "serial", Address: good, Insecure: true},
	})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	ca := filepath.Join(dir, "ca-cert.pem")
	proxyURL := "wss://" + p.addr

	emptyToken := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(emptyToken, nil, 0o600)

	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		match string
	}{
		{"unknown token", []string{"--token-file", writeToken(t, "no-such-token")}, cmdutil.ExitRefused, "unknown token"},
		{"empty token", []string{"--token-file", emptyToken}, cmdutil.ExitRefused, "no token"},
		{"wrong case", []string{"--token-file", writeToken(t, "good-token-123")}, cmdutil.ExitRefused, "unknown token"},
		{"QEMU not listening", []string{"--token-file", writeToken(t, "nobody-home")}, cmdutil.ExitUnreachable, "unreachable"},
		{"QEMU cert from another CA", []string{"--token-file", writeToken(t, "foreign-ca")}, cmdutil.ExitUnreachable, "TLS toward the console failed"},
		{"insecure target refused", []string{"--token-file", writeToken(t, "cleartext")}, cmdutil.ExitUnreachable, "--connect-insecure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, strings.NewReader(""), append([]string{"serial", "--proxy", proxyURL, "--ca-file", ca}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			checkOneLine(t, r.stderr, tc.match)
		})
	}
	// What to do about QEMU's certificate is for the operator: the
	// proxy's log says it, with the console's address; the client's line
	// names neither.
	if log := p.log.String(); !strings.Contains(log, "ca-cert.pem") || !strings.Contains(log, foreign) {
		t.Errorf("the proxy's log does not explain the foreign CA:\n%s", log)
	}

	t.Run("proxy certificate not trusted", func(t *testing.T) {
		r := run(t, strings.NewReader(""), "serial", "--proxy", proxyURL, "--token-file", writeToken(t, "Good-Token-123"))
		if r.code != cmdutil.ExitTLS {
			t.Fatalf("exit code %d, want %d; stderr: %s", r.code, cmdutil.ExitTLS, r.stderr)
		}
		checkOneLine(t, r.stderr, "certificate")
		checkOneLine(t, r.stderr, "; pass --ca-file with the CA that signed it")
	})

	t.Run("origin not allowed", func(t *testing.T) {
		h := http.Header{}
		h.Set("Origin", "https://evil.example")
		h.Set("Authorization", "Bearer Good-Token-123")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		creds := clientTLS(t, ca)
		_, err := wsconn.Dial(ctx, proxyURL+"/websockify", h, &wsconn.DialOptions{TLSConfig: creds})
		var he *wsconn.HandshakeError
		if !errors.As(err, &he) || he.StatusCode != http.StatusForbidden {
			t.Fatalf("dial with a foreign Origin: %v, want HTTP 403", err)
		}
		if !strings.Contains(he.Reason, "origin") {
			t.Fatalf("reason %q does not mention the origin", he.Reason)
		}
	})

	t.Run("still serving", func(t *testing.T) {
		c := startSerial(t, "--proxy", proxyURL, "--ca-file", ca, "--token-file", writeToken(t, "Good-Token-123"))
		waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
		c.stdin.Close()
		if code := c.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit code %d; stderr: %s", code, c.errb.String())
		}
	})

	for _, tok := range []string{"Good-Token-123", "foreign-ca", "nobody-home", "no-such-token", "good-token-123"} {
		if strings.Contains(p.log.String(), tok) {
			t.Errorf("the proxy log contains token %q", tok)
		}
	}
}

// checkOneLine checks that stderr is one line mentioning want.
func checkOneLine(t *testing.T, stderr, want string) {
	t.Helper()
	s := strings.TrimSuffix(stderr, "\n")
	if s == "" || strings.Contains(s, "\n") {
		t.Fatalf("stderr is not one line: %q", stderr)
	}
	if !strings.Contains(s, want) {
		t.Fatalf("stderr %q does not mention %q", s, want)
	}
}

// TestServerStartupErrors: the proxy refuses to start without TLS material
// or with broken credentials, with a clear line and exit code.
func TestServerStartupErrors(t *testing.T) {
	tokens := writeTokens(t, map[string]resolver.Console{"t": {Type: "serial", Address: "127.0.0.1:1"}})
	dir := pki(t)
	badDir := t.TempDir()
	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		match string
	}{
		{"no listener TLS", []string{"--tokens", tokens, "--connect-insecure"}, cmdutil.ExitUsage, "--tls-dir"},
		{"no QEMU TLS", []string{"--tokens", tokens, "--tls-dir", dir}, cmdutil.ExitUsage, "--connect-tls-dir"},
		{"no resolver", []string{"--tls-dir", dir, "--connect-tls-dir", dir}, cmdutil.ExitUsage, "--tokens"},
		{"broken cert dir", []string{"--tokens", tokens, "--tls-dir", badDir, "--connect-tls-dir", dir}, cmdutil.ExitTLS, "ca-cert.pem"},
		{"malformed token file", []string{"--tokens", writeFile(t, "{not json"), "--tls-dir", dir, "--connect-tls-dir", dir}, cmdutil.ExitUsage, "token file"},
		{"admin listener without its CA", []string{"--tokens", tokens, "--tls-dir", dir, "--connect-tls-dir", dir, "--admin-listen", "127.0.0.1:0"},
			cmdutil.ExitUsage, "--admin-listen needs --admin-client-ca FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, append([]string{"server", "proxy", "--listen", "127.0.0.1:0"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			checkOneLine(t, r.stderr, tc.match)
		})
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "file.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMutualTLSAndStdinToken: a proxy that requires client certificates
// refuses a client without one (exit 4) and serves one with --tls-dir; the
// token comes from the first line of stdin and the rest of stdin is typed
// into the console.
func TestMutualTLSAndStdinToken(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{"mtls-token": {Type: "console", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--require-client-cert", "--connect-tls-dir", dir, "--tokens", tokens)
	ca := filepath.Join(dir, "ca-cert.pem")

	r := run(t, strings.NewReader("mtls-token\n"), "serial", "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", "-")
	if r.code != cmdutil.ExitTLS {
		t.Fatalf("without a client certificate: exit %d, want %d; stderr %q", r.code, cmdutil.ExitTLS, r.stderr)
	}
	checkOneLine(t, r.stderr, "certificate")

	pr, pw := io.Pipe()
	defer pw.Close()
	c := newClient(vcBinary, "serial", "--proxy", "wss://"+p.addr, "--tls-dir", dir, "--token-file", "-")
	c.cmd.Stdin = pr
	c.done = launch(t, c.cmd, c.errb.String)
	io.WriteString(pw, "mtls-token\n")
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
	io.WriteString(pw, "info name\n")
	waitFor(t, 30*time.Second, "the answer to 'info name'", func() bool { return strings.Count(c.out.String(), "(qemu)") >= 2 })
	pw.Close()
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr %q", code, c.errb.String())
	}
	if strings.Contains(c.out.String(), "mtls-token") {
		t.Fatal("the token line was typed into the console")
	}
}

// TestSingleUseStaticToken: with --single-use a token opens one session;
// the next attempt with it is refused as unknown (exit 2), and other
// tokens still work.
func TestSingleUseStaticToken(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		"once-1": {Type: "console", Address: addr},
		"once-2": {Type: "console", Address: addr},
	})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens, "--single-use")
	ca := filepath.Join(dir, "ca-cert.pem")
	session := func(tok string) {
		t.Helper()
		c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, tok))
		waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
		c.stdin.Close()
		if code := c.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d; stderr %q", code, c.errb.String())
		}
	}
	session("once-1")
	r := run(t, strings.NewReader(""), "serial", "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, "once-1"))
	if r.code != cmdutil.ExitRefused {
		t.Fatalf("second use: exit %d, want %d; stderr %q", r.code, cmdutil.ExitRefused, r.stderr)
	}
	checkOneLine(t, r.stderr, "unknown token")
	session("once-2")
}
