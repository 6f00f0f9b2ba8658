package libvirtresolver

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// readUntil reads c until its output contains want.
func readUntil(t *testing.T, c net.Conn, want string, timeout time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	var seen strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), want) {
		n, err := c.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("waiting for %q: %v; got %q", want, err, seen.String())
		}
	}
	return seen.String()
}

// shell types a command into the guest's shell and waits for want.
func shell(t *testing.T, c net.Conn, cmd, want string) {
	t.Helper()
	if _, err := c.Write([]byte(cmd + "\r")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, want, 10*time.Second)
}

// TestConsoleStream boots the tiny Linux guest with a pty serial console
// and talks to its shell over libvirt's console stream: directly, when
// busy (with and without force), and through the Dial of the resolver's
// target and of Consoles' target.
func TestConsoleStream(t *testing.T) {
	d, c := connect(t)
	ctx := ctxT(t)
	kernel, initrd := libvirttest.LinuxGuest(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{Kernel: kernel, Initrd: initrd, Paused: true})

	con, err := c.OpenConsole(ctx, dom.Name, "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	if con.RemoteAddr().Network() != "libvirt-console" || con.RemoteAddr().String() != "libvirt "+d.URI+" domain "+dom.Name+" default console" {
		t.Errorf("RemoteAddr %v", con.RemoteAddr())
	}
	start := time.Now()
	dom.Virsh(t, "resume", dom.UUID)
	readUntil(t, con, qemutest.GuestReady, 60*time.Second)
	t.Logf("guest ready %v after resume", time.Since(start).Round(time.Millisecond))
	readUntil(t, con, "# ", 10*time.Second)
	start = time.Now()
	shell(t, con, "echo $((6*7))", "42")
	t.Logf("echo answered in %v", time.Since(start).Round(time.Millisecond))

	// Read deadlines work and leave the conn usable.
	con.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = io.Copy(io.Discard, con) // the prompt, then nothing
	if !isTimeout(err) {
		t.Errorf("read past the deadline: %v", err)
	}
	con.SetReadDeadline(time.Time{})
	shell(t, con, "echo $((6*7))", "42")

	// Busy without force: a clear error. With force: taken over.
	_, err = c.OpenConsole(ctx, dom.UUID, "serial0", false)
	if !errors.Is(err, consolestream.ErrConsoleBusy) {
		t.Fatalf("second open without force: %v, want consolestream.ErrConsoleBusy", err)
	}
	checkOneLine(t, err)
	con2, err := c.OpenConsole(ctx, dom.UUID, "serial0", true)
	if err != nil {
		t.Fatalf("open with force: %v", err)
	}
	defer con2.Close()
	con.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, con)
	t.Logf("the first holder's read after the takeover: %v", err)
	if isTimeout(err) {
		t.Error("the first holder was not told about the takeover")
	}
	shell(t, con2, "echo $((6*7))", "42")
	con2.Close()

	// Unknown device.
	if _, err := c.OpenConsole(ctx, dom.UUID, "serial7", false); err == nil {
		t.Error("serial7 opened")
	} else {
		checkOneLine(t, err)
	}

	// Through the resolver, as the bundled server does.
	if _, err := c.Enable(ctx, dom.Name, []protocols.Kind{protocols.KindSerial}, "", false); err != nil {
		t.Fatal(err)
	}
	defer c.Disable(context.Background(), dom.UUID)
	tok, _, err := c.Token(ctx, dom.Name, protocols.KindSerial, 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newResolver(t, d, WithConsoleStreams())
	var target protocols.Target
	waitFor(t, "serial token", 5*time.Second, func() (bool, string) {
		var err error
		target, err = r.Resolve(ctx, tok)
		return err == nil, ""
	})
	if want := "libvirt " + d.URI + " domain " + dom.Name + " serial0"; target.Address != want || target.Dial == nil {
		t.Fatalf("target %+v, want Address %q and a Dial", target, want)
	}
	sc, err := target.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shell(t, sc, "echo $((6*7))", "42")
	sc.Close()

	// Consoles' target of the same console dials the same stream.
	cons, err := c.Consoles(ctx, dom.Name, false)
	if err != nil {
		t.Fatal(err)
	}
	listed := tokenOf(t, cons, protocols.KindSerial, 0)
	if listed.Address != d.URI+"#"+dom.UUID+"/serial0" || listed.Target.Address != target.Address {
		t.Errorf("Consoles lists %q with target %q", listed.Address, listed.Target.Address)
	}
	lc, err := listed.Target.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	shell(t, lc, "echo $((6*7))", "42")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
