package main

// Several viewers of one serial console through the proxy, with roles,
// as README's "Sharing a console" runs them.

import (
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

const (
	shareControlToken = "share-control-token-0123456789abcdef"
	shareViewToken    = "share-view-token-0123456789abcdef"
)

// TestSharedSerialConsole runs README's "Sharing a console" against the
// tiny Linux guest on a TLS chardev: a control viewer (alice), a viewer
// whose token grants only view (bob) and one that asked for view with
// alice's token (--view). Every viewer sees the guest's answers; the late
// joiners first see what came before they joined; what the view viewers
// type never reaches the guest; the console stays shared when viewers
// leave, and the last one's leaving ends the session.
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
	p := startDaemon(t, args(lines[0])...)
	proxyAddr = p.addr

	alice := startClient(t, args(lines[1])...)
	typeUntil(t, alice, "echo before-$((20+22))\n", "before-42")

	bob := startClient(t, args(lines[2])...)
	carol := startClient(t, args(lines[3])...)
	for name, c := range map[string]*client{"bob": bob, "carol (--view)": carol} {
		waitFor(t, 30*time.Second, name+"'s scrollback with alice's earlier answer", func() bool {
			return strings.Contains(c.out.String(), "before-42")
		})
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
	for _, c := range []*client{bob, carol, dave} {
		c.stdin.Close()
		if code := c.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d; stderr %q", code, c.errb.String())
		}
	}
	waitFor(t, 10*time.Second, "four session ends", func() bool {
		return strings.Count(p.log.String(), "session end") == 4
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
