package main

// "virtconsole serial" in a pipe, as scripts use it: stdin holds one
// command and ends at once; the guest's answer must still come back.

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// pipeRuns is how many times in a row a piped command must get its answer.
const pipeRuns = 20

// askInPipe runs printf 'echo $((6*7))\n' | virtconsole serial ARGS and
// reports whether the output holds the answer, 42, on a line of its own.
func askInPipe(t *testing.T, args ...string) (ok bool, r result) {
	t.Helper()
	r = run(t, strings.NewReader("echo $((6*7))\n"), append([]string{"serial"}, args...)...)
	return r.code == 0 && strings.Contains(r.stdout, "\n42\r\n"), r
}

// waitGuestShell waits (up to 90 s) until the guest's shell answers a
// piped command.
func waitGuestShell(t *testing.T, args ...string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, r := askInPipe(t, args...)
		if ok {
			return
		}
		if r.code != 0 || time.Now().After(deadline) {
			t.Fatalf("the guest's shell never answered: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
	}
}

// pipeGuest waits (up to 90 s) until the guest's shell answers a piped
// command, then wants pipeRuns answers in a row, each in its own process
// whose stdin ends at once.
func pipeGuest(t *testing.T, args ...string) {
	t.Helper()
	waitGuestShell(t, args...)
	var slowest time.Duration
	for i := range pipeRuns {
		start := time.Now()
		ok, r := askInPipe(t, args...)
		if !ok {
			t.Fatalf("run %d of %d: no 42 in the output: exit %d, stdout %q, stderr %q", i+1, pipeRuns, r.code, r.stdout, r.stderr)
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("%d piped runs answered; the slowest took %v", pipeRuns, slowest)
}

// TestSerialPipeThroughProxy: through "server proxy" with TLS on both legs
// (the guest's chardev requires client certificates), a piped command
// whose stdin ends at once gets the guest's answer, every time.
func TestSerialPipeThroughProxy(t *testing.T) {
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Guest: true})
	tokens := writeTokens(t, map[string]resolver.Console{"pipe-token": {Type: "serial", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	pipeGuest(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "pipe-token"))
}
