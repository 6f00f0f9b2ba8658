package main

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
)

// TestBusyListenPort: a listen address already in use is a usage error
// (exit 1) with a line that says what to do, for every daemon and for the
// viewers' local port of vnc and spice.
func TestBusyListenPort(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	addr := held.Addr().String()
	port := strconv.Itoa(held.Addr().(*net.TCPAddr).Port)
	dir := pki(t)
	tokens := writeTokens(t, map[string]resolver.Console{"t": {Type: "serial", Address: "127.0.0.1:1"}})
	token := writeToken(t, "t")
	// The bundled server follows libvirt in the background: a socket
	// nobody listens on is enough to reach the listener.
	noLibvirt := "qemu:///system?socket=" + filepath.Join(t.TempDir(), "no-libvirtd")
	daemon := "virtconsole: listen on " + addr + ": address already in use; choose another --listen address or stop the program using it"
	local := "virtconsole: listen on " + addr + ": address already in use; choose another --local-port (0 picks a free one) or stop the program using it"
	for _, tc := range []struct {
		name string
		args []string
		want string
		logs bool // the daemon may log (libvirt unreachable) before the error
	}{
		{"server proxy", []string{"server", "proxy", "--listen", addr, "--tls-dir", dir, "--connect-tls-dir", dir, "--tokens", tokens}, daemon, false},
		{"server resolver", []string{"server", "resolver", "--listen", addr, "--tls-dir", dir, "--tokens", tokens}, daemon, false},
		{"server", []string{"server", "--listen", addr, "--tls-dir", dir, "--connect-tls-dir", dir, "-c", noLibvirt}, daemon, true},
		{"vnc", []string{"vnc", "--proxy", "wss://127.0.0.1:1", "--token-file", token, "--local-port", port}, local, false},
		{"spice", []string{"spice", "--proxy", "wss://127.0.0.1:1", "--token-file", token, "--local-port", port}, local, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, nil, tc.args...)
			if r.code != cmdutil.ExitUsage {
				t.Fatalf("exit code %d, want %d; stderr: %s", r.code, cmdutil.ExitUsage, r.stderr)
			}
			if tc.logs {
				lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
				if last := lines[len(lines)-1]; last != tc.want {
					t.Fatalf("last line of stderr %q, want %q", last, tc.want)
				}
				return
			}
			checkOneLine(t, r.stderr, tc.want)
		})
	}
}
