package main

// "virtconsole serial --expect/--send" (a scripted session) and
// "virtconsole serial --reconnect", against the tiny Linux guest's shell
// on a TLS chardev, and "virtconsole vnc --once --reconnect", through
// "server proxy" with TLS on both legs.

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// guestProxy boots the tiny guest with its shell on a TLS chardev that
// requires client certificates, starts "server proxy" with TLS on both
// legs and the static token, and waits until the guest's shell answers
// through it. It returns the proxy, its arguments (to start it again) and
// the client's route flags.
func guestProxy(t *testing.T, token string, proxyFlags ...string) (p *daemon, proxyArgs, client []string) {
	t.Helper()
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Guest: true})
	tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "serial", Address: addr}})
	proxyArgs = append([]string{"server", "proxy", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens}, proxyFlags...)
	p = startDaemon(t, append(proxyArgs, "--listen", "127.0.0.1:0")...)
	client = []string{"--proxy", "wss://" + p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, token)}
	if len(proxyFlags) == 0 {
		waitGuestShell(t, client...) // a single-use token cannot be spent on this
	}
	return p, proxyArgs, client
}

// TestSerialExpectThroughProxy: the script exits 0 once the
// guest's shell computed 42; an expect that never matches exits 8 within
// its timeout (plus 2 s) with a line naming the pattern and the console's
// last lines; --log takes the output off standard output.
func TestSerialExpectThroughProxy(t *testing.T) {
	_, _, client := guestProxy(t, "expect-token")
	// The shell's prompt was printed before anyone connected: a newline
	// first makes a new one. "echo $((6*7))" does not contain 42: the
	// match is the shell's answer, not the echo of the command.
	script := []string{"--send", `\n`, "--expect", "# ", "--send", `echo $((6*7))\n`, "--expect", "42"}
	start := time.Now()
	r := run(t, nil, append(append([]string{"serial"}, client...), script...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "echo $((6*7))") || !strings.Contains(r.stdout, "\n42") {
		t.Fatalf("script: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	t.Logf("the script ran in %v", time.Since(start))

	t.Run("timeout", func(t *testing.T) {
		const timeout = 3 * time.Second
		start := time.Now()
		r := run(t, nil, append([]string{"serial"}, append(client, "--timeout", timeout.String(),
			"--send", `echo marker-$((6*7))\n`, "--expect", "marker-42", "--expect", "never-printed")...)...)
		elapsed := time.Since(start)
		if r.code != cmdutil.ExitTimeout {
			t.Fatalf("exit %d, want %d; stderr %q", r.code, cmdutil.ExitTimeout, r.stderr)
		}
		if elapsed < timeout || elapsed > timeout+2*time.Second {
			t.Fatalf("exited after %v, want within %v + 2s", elapsed, timeout)
		}
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		if !strings.HasPrefix(lines[0], `virtconsole: timed out after 3s waiting for --expect "never-printed" (2 of 2)`) ||
			!strings.HasSuffix(lines[0], "the console's last output:") {
			t.Fatalf("first line %q", lines[0])
		}
		// The last output: the answer and the next prompt, no carriage
		// returns or escape sequences.
		tail := strings.Join(lines[1:], "\n")
		if !strings.Contains(tail, "  | marker-42") || !strings.Contains(tail, "# ") || strings.ContainsAny(tail, "\r\x1b") {
			t.Fatalf("the last output:\n%s", tail)
		}
		t.Logf("timed out after %v (timeout %v)", elapsed, timeout)
	})

	t.Run("log", func(t *testing.T) {
		log := filepath.Join(t.TempDir(), "console.log")
		r := run(t, nil, append([]string{"serial"}, append(client, "--log", log,
			"--send", `echo logged-$((6*7))\n`, "--expect", "logged-42")...)...)
		b, err := os.ReadFile(log)
		if r.code != 0 || err != nil || !strings.Contains(string(b), "logged-42") || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q, stderr %q; log %q, %v", r.code, r.stdout, r.stderr, b, err)
		}
		if fi, err := os.Stat(log); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("log file mode: %v, %v", fi.Mode(), err)
		}
	})
}

// TestSerialReconnectFirst: with --reconnect, a scripted session started
// before its console exists (the VM not started yet: the proxy answers
// 502) waits for it, saying so, and runs once QEMU is there.
func TestSerialReconnectFirst(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	port := qemutest.FreePort(t)
	tokens := writeTokens(t, map[string]resolver.Console{"first": {Type: "serial", Address: "127.0.0.1:" + strconv.Itoa(port)}})
	p := startDaemon(t, "server", "proxy", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens, "--listen", "127.0.0.1:0")
	c := startClient(t, "serial", "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "first"),
		"--reconnect", "--timeout", "60s", "--send", `\n`, "--expect", "# ", "--send", `echo first-$((6*7))\n`, "--expect", "first-42")
	waitFor(t, 20*time.Second, "the client's waiting line", func() bool {
		return strings.Contains(c.errb.String(), "(HTTP 502): console unreachable; reconnecting in ")
	})
	qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Guest: true, Port: port})
	if code := c.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("exit %d; stdout %q, stderr %q", code, c.out.String(), c.errb.String())
	}
	if !strings.Contains(c.errb.String(), "virtconsole: connected\n") || !strings.Contains(c.out.String(), "first-42") {
		t.Fatalf("stdout %q, stderr %q", c.out.String(), c.errb.String())
	}
}

// reconnectingSerial starts "serial --reconnect" through the proxy (stdin
// a pipe kept open), makes sure the guest's shell answers it, then kills
// the proxy and starts it again on the same address.
func reconnectingSerial(t *testing.T, p *daemon, proxyArgs, client []string) *client {
	t.Helper()
	c := startSerial(t, append(client, "--reconnect")...)
	typeUntil(t, c, "echo before-$((6*7))\n", "before-42")
	p.cmd.Process.Kill()
	<-p.done
	waitFor(t, 10*time.Second, "the client's connection lost line", func() bool {
		return strings.Contains(c.errb.String(), "virtconsole: connection lost (")
	})
	startDaemon(t, append(proxyArgs, "--listen", p.addr)...)
	return c
}

// TestSerialReconnectThroughProxy: the proxy is killed during a session
// and started again on the same port; the client reconnects by itself,
// says so, and the guest's shell answers a new command.
func TestSerialReconnectThroughProxy(t *testing.T) {
	p, proxyArgs, client := guestProxy(t, "multi-use")
	c := reconnectingSerial(t, p, proxyArgs, client)
	waitFor(t, 60*time.Second, "the client's reconnected line", func() bool {
		return strings.Contains(c.errb.String(), "virtconsole: reconnected\n")
	})
	typeUntil(t, c, "echo after-$((6*7))\n", "after-42")
	c.stdin.Close()
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; stderr %q", code, c.errb.String())
	}
	t.Logf("client stderr:\n%s", c.errb.String())
}

// TestSerialReconnectSingleUse: with a single-use token, the reconnect
// after the proxy's restart is refused (the token is spent, and stays
// spent across the restart); the client says so in one line and exits 2
// at once instead of retrying.
func TestSerialReconnectSingleUse(t *testing.T) {
	p, proxyArgs, client := guestProxy(t, "single-use", "--single-use")
	c := reconnectingSerial(t, p, proxyArgs, client)
	restarted := time.Now()
	if code := c.wait(t, 30*time.Second); code != cmdutil.ExitRefused {
		t.Fatalf("exit %d, want %d; stderr %q", code, cmdutil.ExitRefused, c.errb.String())
	}
	t.Logf("exited %v after the proxy restarted; stderr:\n%s", time.Since(restarted), c.errb.String())
	lines := strings.Split(strings.TrimRight(c.errb.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "virtconsole: the token was refused on reconnect (proxy ") ||
		!strings.Contains(last, "unknown token") || !strings.HasSuffix(last, "get a new one and run the command again") {
		t.Fatalf("last line %q", last)
	}
	if strings.Contains(c.errb.String(), "virtconsole: reconnected") {
		t.Fatalf("stderr:\n%s", c.errb.String())
	}
}

// TestVNCOnceReconnect: "vnc --once --reconnect" through the proxy (TLS
// both legs, QEMU's VeNCrypt with client certificates). The proxy is
// killed during a viewer's session: the viewer's connection ends but the
// command does not; a viewer connecting while the proxy is down waits
// (one line per attempt on stderr) and gets ServerInit once the proxy is
// back on its port; when that viewer closes its session normally, the
// command ends with 0, as --once says.
func TestVNCOnceReconnect(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(t, map[string]resolver.Console{"vnc-multi": {Type: "vnc", Address: addr}})
	proxyArgs := []string{"server", "proxy", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens}
	p := startDaemon(t, append(proxyArgs, "--listen", "127.0.0.1:0")...)
	g := startVNC(t, "--once", "--reconnect", "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"),
		"--token-file", writeToken(t, "vnc-multi"))
	local := "127.0.0.1:" + strconv.Itoa(g.port)

	first := dialTCP(t, local)
	rfbHandshake(t, first)
	p.cmd.Process.Kill()
	<-p.done
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(first); err != nil {
		t.Fatalf("the first viewer's connection did not end when the proxy died: %v", err)
	}
	waitFor(t, 10*time.Second, "the lost session's line", func() bool {
		return strings.Contains(g.errb.String(), "virtconsole: viewer "+first.LocalAddr().String()+": ")
	})
	select {
	case <-g.done:
		t.Fatalf("the command ended with the lost session (exit %d); stderr:\n%s", g.cmd.ProcessState.ExitCode(), g.errb.String())
	case <-time.After(500 * time.Millisecond):
	}

	second := dialTCP(t, local)
	prefix := "virtconsole: viewer " + second.LocalAddr().String() + ": "
	waitFor(t, 10*time.Second, "a retry line for the second viewer", func() bool {
		return strings.Contains(g.errb.String(), prefix) && strings.Contains(g.errb.String(), "reconnecting in")
	})
	startDaemon(t, append(proxyArgs, "--listen", p.addr)...)
	if name, w, h, _ := rfbHandshake(t, second); name == "" || w == 0 || h == 0 {
		t.Fatalf("ServerInit %q %dx%d", name, w, h)
	}
	if !strings.Contains(g.errb.String(), prefix+"connected\n") {
		t.Fatalf("no connected line for the second viewer; stderr:\n%s", g.errb.String())
	}
	second.Close()
	if code := g.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after the viewer closed its session; stderr:\n%s", code, g.errb.String())
	}
	t.Logf("stderr:\n%s", g.errb.String())
}
