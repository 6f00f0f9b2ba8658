package main

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// TestVNCOncePrintsFailureOnce: with --once, a viewer connection whose
// console is unreachable ends the command with exit 3 and the failure on
// one line of stderr, not once for the viewer and again for the command.
func TestVNCOncePrintsFailureOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	g := startGraphics(t, "vnc", "--once", "--target", closed, "--connect-insecure")
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(g.port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if code := g.wait(t, 30*time.Second); code != cmdutil.ExitUnreachable {
		t.Fatalf("exit code %d, want %d; stderr %q", code, cmdutil.ExitUnreachable, g.errb.String())
	}
	checkOneLine(t, g.errb.String(), "QEMU at "+closed+" unreachable")
	if !strings.HasPrefix(g.errb.String(), "virtconsole: viewer 127.0.0.1:") {
		t.Errorf("stderr %q does not name the viewer", g.errb.String())
	}
}
