package main

// Several viewers of one serial console through the proxy, with roles,
// as README's "Sharing a console" runs them.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

const (
	shareControlToken = "share-control-token-0123456789abcdef"
	shareViewToken    = "share-view-token-0123456789abcdef"
)

// TestSharedSerialConsole runs README's "Sharing a console" against the
// tiny Linux guest on a TLS chardev: a control viewer (alice), a viewer
// whose token grants only view (bob) and one that asked for view with
// alice's token (--view). Every viewer sees the guest's answers; the late
// joiners first see what came before they joined; "sessions list" shows
// one session of three viewers with their roles; what the view viewers
// type never reaches the guest; the console stays shared when viewers
// leave; a viewer that stops reading is dropped with 4003 while the
// others get the whole flood; the last one's leaving ends the session.
func TestSharedSerialConsole(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Guest: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		shareControlToken: {Type: "serial", Address: addr},
		shareViewToken:    {Type: "serial", Address: addr, Role: "view"},
	})

	lines := readmeSubsection(t, "Sharing a console")
	if len(lines) != 4 {
		t.Fatalf("README's Sharing a console block has %d commands, want the server and three viewers:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var proxyAddr string
	args := func(line string) []string {
		line = strings.NewReplacer("127.0.0.1:6443", proxyAddr, "./pki", dir, "tokens.json", tokens,
			"alice.token", writeToken(t, shareControlToken), "bob.token", writeToken(t, shareViewToken)).Replace(line)
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "virtconsole" {
			t.Fatalf("README line %q does not run virtconsole", line)
		}
		return f[1:]
	}
	proxyAddr = "127.0.0.1:0"
	p := startDaemon(t, append(args(lines[0]), "--admin-listen", "127.0.0.1:0", "--admin-client-ca", filepath.Join(dir, "ca-cert.pem"))...)
	proxyAddr = p.addr
	admin := "https://" + adminAddrOf(t, p)

	alice := startClient(t, args(lines[1])...)
	typeUntil(t, alice, "echo before-$((20+22))\n", "before-42")

	bob := startClient(t, args(lines[2])...)
	carol := startClient(t, args(lines[3])...)
	for name, c := range map[string]*client{"bob": bob, "carol (--view)": carol} {
		waitFor(t, 30*time.Second, name+"'s scrollback with alice's earlier answer", func() bool {
			return strings.Contains(c.out.String(), "before-42")
		})
	}

	// "sessions list": one session, its three viewers and their roles.
	r := run(t, nil, "sessions", "list", "--server", admin, "--tls-dir", dir, "--json")
	var list []proxy.SessionInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
		t.Fatalf("sessions list --json: exit %d, %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	var roles []string
	for _, s := range list {
		for _, c := range s.Connections {
			roles = append(roles, string(c.Role))
		}
	}
	if len(list) != 1 || list[0].Viewers != 3 || strings.Join(roles, " ") != "control view view" {
		t.Fatalf("sessions %+v: want one session of 3 viewers: control, view, view", list)
	}
	if r := run(t, nil, "sessions", "list", "--server", admin, "--tls-dir", dir); r.code != 0 || !strings.Contains(r.stdout, "1 control, 2 view") {
		t.Fatalf("sessions list: exit %d, %q: want the roles 1 control, 2 view", r.code, r.stdout)
	}

	// The view viewers type first; then alice. Her answer reaching
	// everyone shows the guest read what came before it.
	io.WriteString(bob.stdin, "echo bob-$((1+1))\n")
	io.WriteString(carol.stdin, "echo carol-$((2+2))\n")
	time.Sleep(time.Second)
	io.WriteString(alice.stdin, "echo after-$((3+4))\n")
	for name, c := range map[string]*client{"alice": alice, "bob": bob, "carol": carol} {
		waitFor(t, 30*time.Second, name+" seeing alice's answer", func() bool {
			return strings.Contains(c.out.String(), "after-7")
		})
		if out := c.out.String(); strings.Contains(out, "bob") || strings.Contains(out, "carol") {
			t.Fatalf("%s's output shows a view viewer's input reached the guest:\n%q", name, out)
		}
	}

	// Alice leaves; bob still watches the same console.
	alice.stdin.Close()
	if code := alice.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("alice: exit %d; stderr %q", code, alice.errb.String())
	}
	dave := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, shareControlToken))
	typeUntil(t, dave, "echo again-$((4+5))\n", "again-9")
	waitFor(t, 30*time.Second, "bob seeing dave's answer", func() bool { return strings.Contains(bob.out.String(), "again-9") })
	// A viewer that stops reading (a websocket of the test's own, with a
	// small receive buffer) is dropped with 4003 while the others get
	// the whole flood.
	stalled := stalledViewer(t, p.addr, filepath.Join(dir, "ca-cert.pem"), shareViewToken)
	start := time.Now()
	io.WriteString(dave.stdin, "yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 3000000; echo flood-$((2+3))\n")
	for name, c := range map[string]*client{"bob": bob, "carol": carol, "dave": dave} {
		waitFor(t, 180*time.Second, name+" seeing the flood's end", func() bool { return strings.Contains(c.out.String(), "flood-5") })
	}
	t.Logf("3 MB of output reached every reading viewer in %v", time.Since(start).Round(time.Millisecond))
	stalled.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, stalled)
	var ce *wsconn.CloseError
	if !errors.As(err, &ce) || ce.Code != wsconn.CloseViewerTooSlow || ce.Reason != "viewer too slow" {
		t.Fatalf("the viewer that stopped reading: %v, want close 4003 viewer too slow", err)
	}

	for _, c := range []*client{bob, carol, dave} {
		c.stdin.Close()
		if code := c.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d; stderr %q", code, c.errb.String())
		}
	}
	waitFor(t, 10*time.Second, "five session ends", func() bool {
		return strings.Count(p.log.String(), "session end") == 5
	})
	for _, role := range []string{"role=control", "role=view"} {
		if !strings.Contains(p.log.String(), role) {
			t.Errorf("the proxy's log has no %s", role)
		}
	}
	if strings.Contains(p.log.String(), shareControlToken) || strings.Contains(p.log.String(), shareViewToken) {
		t.Fatal("the proxy logged a token")
	}
}

// stalledViewer opens a websocket session of token that never reads, with
// a receive buffer as small as the kernel allows, so that the proxy's
// writes back up soon.
func stalledViewer(t *testing.T, proxyAddr, ca, token string) net.Conn {
	t.Helper()
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, err := wsconn.Dial(ctx, "wss://"+proxyAddr+"/websockify", h, &wsconn.DialOptions{TLSConfig: clientTLS(t, ca),
		Subprotocols: []string{"binary"}, NetDialContext: d.DialContext, DeadPeerTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}
