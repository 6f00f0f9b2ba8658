package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// openPTY returns a pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func termios(t *testing.T, f *os.File) unix.Termios {
	t.Helper()
	tio, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

// TestRawModeRestored: with a terminal on stdin the client switches it to
// raw mode, and restores it however the session ends: the escape key,
// the console closing, or SIGTERM.
func TestRawModeRestored(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	for _, end := range []string{"escape", "remote-close", "sigterm"} {
		t.Run(end, func(t *testing.T) {
			_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
			tokens := writeTokens(t, map[string]resolver.Console{"tty": {Type: "serial", Address: addr}})
			p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens)
			master, slave := openPTY(t)
			before := termios(t, slave)
			if before.Lflag&unix.ICANON == 0 {
				t.Fatal("new pty is not in canonical mode")
			}
			c := newClient(vcBinary, "serial", "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "tty"))
			c.cmd.Stdin = slave
			c.done = launch(t, c.cmd, c.errb.String)

			waitFor(t, 30*time.Second, "the banner naming the escape key", func() bool {
				return strings.Contains(c.errb.String(), "type ^] to leave")
			})
			waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
			if raw := termios(t, slave); raw.Lflag&unix.ICANON != 0 || raw.Lflag&unix.ECHO != 0 {
				t.Fatal("terminal not in raw mode during the session")
			}
			want := 0
			switch end {
			case "escape":
				master.Write([]byte("info st\x1datus\r"))
			case "remote-close":
				master.Write([]byte("quit\r")) // pasted at once: QEMU exits and closes the console
			case "sigterm":
				c.cmd.Process.Signal(syscall.SIGTERM)
				want = 130
			}
			if code := c.wait(t, 30*time.Second); code != want {
				t.Fatalf("exit code %d, want %d; stderr: %q", code, want, c.errb.String())
			}
			after := termios(t, slave)
			if after != before {
				t.Fatalf("terminal settings not restored:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

// TestProxyDrainsOnSIGTERM: SIGTERM stops accepting, lets a running
// session go on for --drain-timeout, then closes it and exits 0.
func TestProxyDrainsOnSIGTERM(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{"d": {Type: "serial", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens, "--drain-timeout", "1s")
	c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "d"))
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("proxy did not exit after SIGTERM")
	}
	took := time.Since(start)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("proxy exit code %d", code)
	}
	if took < time.Second {
		t.Fatalf("proxy exited after %v, before the 1s drain period, with a session open", took)
	}
	for _, line := range []string{"proxy stopping", "session end", "proxy stopped"} {
		if !strings.Contains(p.log.String(), line) {
			t.Fatalf("proxy log lacks %q:\n%s", line, p.log.String())
		}
	}
	// The client sees its session end, and why: the proxy closed it with
	// 1001 going away, which is a lost connection (exit 5), not the
	// console closing (exit 0).
	if code := c.wait(t, 30*time.Second); code != 5 || !strings.Contains(c.errb.String(), "proxy shutting down") {
		t.Fatalf("client exit code %d, want 5 with the reason; stderr: %s", code, c.errb.String())
	}
}

// TestReconnectTerminal: "serial --reconnect" on a terminal leaves raw
// mode while it waits for the proxy to come back (the terminal is as it
// was before), where Ctrl+C ends it (130) and so does the escape key
// (after Enter: the terminal is in canonical mode); once reconnected the
// terminal is raw again and the console answers.
func TestReconnectTerminal(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	for _, end := range []string{"reconnect", "ctrl-c", "escape"} {
		t.Run(end, func(t *testing.T) {
			_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
			tokens := writeTokens(t, map[string]resolver.Console{"tty": {Type: "serial", Address: addr}})
			proxyArgs := []string{"server", "proxy", "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens}
			p := startDaemon(t, append(proxyArgs, "--listen", "127.0.0.1:0")...)
			master, slave := openPTY(t)
			before := termios(t, slave)
			c := newClient(vcBinary, "serial", "--reconnect", "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "tty"))
			c.cmd.Stdin = slave
			// The terminal is the client's controlling terminal, so that
			// Ctrl+C typed on it is a SIGINT to the client.
			c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
			c.done = launch(t, c.cmd, c.errb.String)
			waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(c.out.String(), "(qemu)") })
			if raw := termios(t, slave); raw.Lflag&unix.ICANON != 0 {
				t.Fatal("terminal not in raw mode during the session")
			}

			p.cmd.Process.Kill()
			<-p.done
			waitFor(t, 10*time.Second, "the connection lost line", func() bool {
				return strings.Contains(c.errb.String(), "virtconsole: connection lost (")
			})
			if waiting := termios(t, slave); waiting != before {
				t.Fatalf("terminal not restored while waiting to reconnect:\nbefore  %+v\nwaiting %+v", before, waiting)
			}
			want := 0
			switch end {
			case "reconnect":
				startDaemon(t, append(proxyArgs, "--listen", p.addr)...)
				waitFor(t, 30*time.Second, "the reconnected line", func() bool {
					return strings.Contains(c.errb.String(), "virtconsole: reconnected")
				})
				waitFor(t, 10*time.Second, "raw mode again", func() bool { return termios(t, slave).Lflag&unix.ICANON == 0 })
				master.Write([]byte("info name\r"))
				waitFor(t, 30*time.Second, "the answer after reconnecting", func() bool {
					return strings.Count(c.out.String(), "(qemu)") >= 2
				})
				master.Write([]byte{0x1d})
			case "ctrl-c":
				master.Write([]byte{0x03})
				want = 130
			case "escape":
				master.Write([]byte("\x1d\r"))
			}
			if code := c.wait(t, 30*time.Second); code != want {
				t.Fatalf("exit code %d, want %d; stderr: %q", code, want, c.errb.String())
			}
			if after := termios(t, slave); after != before {
				t.Fatalf("terminal settings not restored:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}
