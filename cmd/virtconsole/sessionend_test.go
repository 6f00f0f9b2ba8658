package main

import (
	"bufio"
	"fmt"
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

// TestQEMUKilledMidSession: QEMU killed in a session reaches the client
// as the proxy's close 1011 with a reason, which virtconsole serial
// prints before exiting 5 (connection lost). The guest is stopped, so its
// UART takes one byte and QEMU leaves the rest of the input unread in the
// socket: killing QEMU then resets the connection, which is what tells a
// killed console from one that closed (a clean close is 1000, exit 0).
func TestQEMUKilledMidSession(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	q, addr := qemutest.StartSerial(t, qemutest.SerialOptions{Paused: true})
	tokens := writeTokens(t, map[string]resolver.Console{"k": {Type: "serial", Address: addr, Insecure: true}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-insecure", "--tokens", tokens)
	c := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "k"))
	q.WaitChardevConnected("s0", 30*time.Second)
	if _, err := c.stdin.Write([]byte(strings.Repeat("x", 4096))); err != nil {
		t.Fatal(err)
	}
	_, port, _ := strings.Cut(addr, ":")
	waitFor(t, 30*time.Second, "QEMU's console socket to hold unread input", func() bool { return unreadInput(t, port) > 0 })
	q.Kill()
	if code := c.wait(t, 30*time.Second); code != cmdutil.ExitLost {
		t.Fatalf("exit code %d, want %d; stderr: %s", code, cmdutil.ExitLost, c.errb.String())
	}
	for _, want := range []string{"console closed unexpectedly", "reset", "websocket close 1011"} {
		if !strings.Contains(c.errb.String(), want) {
			t.Fatalf("stderr lacks %q: %s", want, c.errb.String())
		}
	}
}

// unreadInput returns the bytes waiting unread in the established
// loopback TCP sockets whose local port is port (QEMU's side of its
// chardev connections), from /proc/net/tcp.
func unreadInput(t *testing.T, port string) int {
	t.Helper()
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", n)
	total := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[1] != local || fields[3] != "01" {
			continue
		}
		_, rx, _ := strings.Cut(fields[4], ":")
		if v, err := strconv.ParseInt(rx, 16, 64); err == nil {
			total += int(v)
		}
	}
	return total
}
