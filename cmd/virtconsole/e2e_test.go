package main

// End-to-end tests: the real virtconsole vcBinary, as a user runs it,
// against real QEMU processes started by protocols/qemutest.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

var (
	vcBinary string
	// emptyConfigHome is XDG_CONFIG_HOME for the vcBinary: an empty
	// directory, so that no developer's client config file is read.
	emptyConfigHome string
)

func TestMain(m *testing.M) {
	if dir, ok := os.LookupEnv(soakEchoEnv); ok {
		soakEchoMain(dir) // this process is TestSoak's echo consoles
		return
	}
	if target, ok := os.LookupEnv(gorillaProxyEnv); ok {
		gorillaProxyMain(target) // this process is BenchmarkTable's minimal gorilla proxy
		return
	}
	if cfg, ok := os.LookupEnv(systemctlShimEnv); ok {
		os.Exit(systemctlMain(cfg, os.Args[1:])) // this process is TestREADMEOperating's systemctl
	}
	dir, err := os.MkdirTemp("", "virtconsole-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	vcBinary = filepath.Join(dir, "virtconsole")
	emptyConfigHome = filepath.Join(dir, "config-home")
	if err := os.Mkdir(emptyConfigHome, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	args := []string{"build", "-o", vcBinary}
	if raceEnabled {
		args = append(args, "-race") // the binary under test is checked too
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build virtconsole: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the environment for the vcBinary: ours without VIRTCONSOLE_*,
// an empty config file for the daemons, so that an installed
// /etc/virtconsole/server.toml does not change them (--config wins), an
// empty XDG_CONFIG_HOME, so that no client config file is read, and
// raceGORACE; extra comes last and wins (exec keeps a key's last value).
func env(extra ...string) []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VIRTCONSOLE_") && !strings.HasPrefix(kv, "GORACE=") {
			e = append(e, kv)
		}
	}
	e = append(e, "VIRTCONSOLE_CONFIG="+os.DevNull, "XDG_CONFIG_HOME="+emptyConfigHome, "GORACE="+raceGORACE())
	return append(e, extra...)
}

// raceGORACE is GORACE for the vcBinary: ours, plus atexit_sleep_ms=0
// unless ours sets it. The race runtime otherwise sleeps a second before
// every exit (its default, to let other threads report), which hundreds
// of short-lived client commands here would spend doing nothing; races
// are still reported as they are found, and still make the exit status
// 66.
func raceGORACE() string {
	opts := os.Getenv("GORACE")
	if !strings.Contains(opts, "atexit_sleep_ms=") {
		opts = strings.TrimSpace(opts + " atexit_sleep_ms=0")
	}
	return opts
}

// result is a finished command.
type result struct {
	stdout, stderr string
	code           int
}

// run runs the vcBinary to completion with stdin and a bounded time.
func run(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	return runEnv(t, env(), stdin, args...)
}

// runEnv is run with the environment environ.
func runEnv(t *testing.T, environ []string, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vcBinary, args...)
	cmd.Env = environ
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer = qemutest.Buffer

// waitFor polls until cond holds or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// daemon is a running "virtconsole server ..." process.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

var listeningRE = regexp.MustCompile(`msg="(?:proxy|resolver) listening" address=(\S+)`)

// launch starts cmd (with env() unless it has an environment), returns a
// channel closed when it exits, and kills it when the test ends, logging
// logs() then if the test failed.
func launch(t testing.TB, cmd *exec.Cmd, logs func() string) chan struct{} {
	t.Helper()
	if cmd.Env == nil {
		cmd.Env = env()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() && logs != nil {
			t.Logf("%s output:\n%s", strings.Join(cmd.Args[1:min(3, len(cmd.Args))], " "), logs())
		}
	})
	return done
}

// startDaemon runs the vcBinary with args (which should listen on
// 127.0.0.1:0) and returns once it logs its address.
func startDaemon(t testing.TB, args ...string) *daemon {
	t.Helper()
	return startDaemonCmd(t, exec.Command(vcBinary, args...), listeningRE)
}

// startDaemonCmd starts cmd, a daemon (or a wrapper such as setpriv or
// strace running one), and returns once its output matches re, whose
// first non-empty group is the listening address.
func startDaemonCmd(t testing.TB, cmd *exec.Cmd, re *regexp.Regexp) *daemon {
	t.Helper()
	d := &daemon{log: &syncBuffer{}, cmd: cmd}
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.done = launch(t, d.cmd, d.log.String)
	waitFor(t, 30*time.Second, "the daemon's listening line", func() bool {
		select {
		case <-d.done:
			t.Fatalf("daemon exited: %s", d.log.String())
		default:
		}
		m := re.FindStringSubmatch(d.log.String())
		for _, g := range m[min(1, len(m)):] {
			if g != "" {
				d.addr = g
				return true
			}
		}
		return false
	})
	return d
}

// pki mints a CA, server and client credentials for 127.0.0.1/localhost.
func pki(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1", "localhost"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeTokens writes a static token file and returns its path.
func writeTokens(t testing.TB, tokens map[string]resolver.Console) string {
	t.Helper()
	b, err := json.Marshal(tokens)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeToken writes a token file for the client and returns its path.
func writeToken(t *testing.T, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// client is a running "virtconsole serial" whose stdin is a pipe.
type client struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *syncBuffer
	errb  *syncBuffer
	done  chan struct{}
}

func startSerial(t *testing.T, args ...string) *client {
	t.Helper()
	return startClient(t, append([]string{"serial"}, args...)...)
}

// startClient runs the binary with args and stdin a pipe.
func startClient(t *testing.T, args ...string) *client {
	t.Helper()
	c := newClient(vcBinary, args...)
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	c.done = launch(t, c.cmd, c.errb.String)
	return c
}

// newClient prepares a client process whose output is collected; start
// it with launch.
func newClient(bin string, args ...string) *client {
	c := &client{out: &syncBuffer{}, errb: &syncBuffer{}}
	c.cmd = exec.Command(bin, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.errb
	return c
}

// wait waits for the client to exit and returns its exit code.
func (c *client) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
		return c.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("virtconsole serial did not exit within %v; stderr: %s", timeout, c.errb.String())
		return -1
	}
}

const bannerEnd = "No bootable device.\r\n"

var (
	directOnce       sync.Once
	directTranscript string
)

// reference returns SeaBIOS's serial output read straight from QEMU, with
// no proxy, up to the "No bootable device." line.
func reference(t *testing.T) string {
	t.Helper()
	directOnce.Do(func() {
		q, addr := qemutest.StartSerial(t, qemutest.SerialOptions{Paused: true})
		c := dialTCP(t, addr)
		q.WaitChardevConnected("s0", 10*time.Second)
		q.Cont()
		var got bytes.Buffer
		c.SetReadDeadline(time.Now().Add(60 * time.Second))
		br := bufio.NewReader(c)
		for !strings.HasSuffix(got.String(), bannerEnd) {
			b, err := br.ReadByte()
			if err != nil {
				t.Fatalf("direct read: %v (got %q)", err, got.String())
			}
			got.WriteByte(b)
		}
		c.Close()
		q.Kill()
		directTranscript = got.String()
	})
	if directTranscript == "" {
		t.Fatal("no reference transcript")
	}
	return directTranscript
}

// TestSerialThroughProxy: the built client, stdin a pipe, receives the
// guest's serial output byte-exact through the proxy, toward a plain
// chardev (--connect-insecure) and a TLS chardev that requires client
// certificates.
func TestSerialThroughProxy(t *testing.T) {
	qemutest.Require(t)
	want := reference(t)
	for _, tc := range []struct {
		name string
		tls  bool
	}{{"plain-chardev", false}, {"tls-chardev-verify-peer", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := pki(t)
			opts := qemutest.SerialOptions{Paused: true}
			if tc.tls {
				opts.TLSDir, opts.VerifyPeer = dir, true
			}
			q, addr := qemutest.StartSerial(t, opts)
			tokens := writeTokens(t, map[string]resolver.Console{
				"serial-token-1": {Type: "serial", Address: addr, Insecure: !tc.tls},
			})
			args := []string{"server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--tokens", tokens}
			if tc.tls {
				args = append(args, "--connect-tls-dir", dir)
			} else {
				args = append(args, "--connect-insecure")
			}
			p := startDaemon(t, args...)
			c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"),
				"--token-file", writeToken(t, "serial-token-1"))
			q.WaitChardevConnected("s0", 30*time.Second)
			q.Cont()
			waitFor(t, 60*time.Second, "the SeaBIOS banner", func() bool {
				return strings.Contains(c.out.String(), bannerEnd)
			})
			got := c.out.String()
			if !strings.HasPrefix(got, want) {
				t.Fatalf("output through the proxy differs from QEMU's own:\n got %q\nwant %q", got, want)
			}
			c.stdin.Close()
			if code := c.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("exit code %d; stderr: %s", code, c.errb.String())
			}
			waitFor(t, 10*time.Second, "the session end log line", func() bool {
				return strings.Contains(p.log.String(), "session end")
			})
			if strings.Contains(p.log.String(), "serial-token-1") {
				t.Fatalf("the proxy logged the token:\n%s", p.log.String())
			}
		})
	}
}

// qemuVersion is QEMU's version as its monitor's "info version" prints
// it, e.g. 8.2.2.
func qemuVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(qemutest.Binary, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	version := regexp.MustCompile(`version (\d+\.\d+\.\d+)`).FindStringSubmatch(string(out))
	if version == nil {
		t.Fatalf("cannot read QEMU's version from %q", out)
	}
	return version[1]
}

// TestSerialTypedBytesReachQEMU types a command into QEMU's monitor on a
// TLS chardev through the proxy and reads QEMU's answer.
func TestSerialTypedBytesReachQEMU(t *testing.T) {
	qemutest.Require(t)
	version := qemuVersion(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{"mon": {Type: "console", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
	c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "mon"))
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
	if _, err := io.WriteString(c.stdin, "info version\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "QEMU's answer to 'info version'", func() bool {
		return strings.Contains(c.out.String(), version)
	})
	c.stdin.Close()
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d; stderr: %s", code, c.errb.String())
	}
}
