package connect

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
)

// fakeRFBServer serves one connection on a loopback listener as an RFB
// 3.8 server with security None and a 2×1 framebuffer; it sends on
// shared the ClientInit's shared-flag, then answers one full update
// request with two Raw pixels.
func fakeRFBServer(t *testing.T) (addr string, shared chan byte) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	shared = make(chan byte, 1)
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte("RFB 003.008\n"))
		io.ReadFull(c, make([]byte, 12))
		c.Write([]byte{1, 1})
		io.ReadFull(c, make([]byte, 1))
		c.Write([]byte{0, 0, 0, 0})
		ci := make([]byte, 1)
		if _, err := io.ReadFull(c, ci); err != nil {
			return
		}
		shared <- ci[0]
		si := []byte{0, 2, 0, 1}
		si = append(si, make([]byte, 16)...)
		c.Write(append(binary.BigEndian.AppendUint32(si, 4), "fake"...))
		// SetPixelFormat, SetEncodings (3), FramebufferUpdateRequest.
		if _, err := io.ReadFull(c, make([]byte, 20+4+12+10)); err != nil {
			return
		}
		upd := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0}
		c.Write(append(upd, 0, 0, 255, 0, 255, 0, 0, 0)) // red, blue
		io.Copy(io.Discard, c)
	}()
	return l.Addr().String(), shared
}

// TestDialViewerDirect: in direct mode the caller speaks RFB as a viewer
// from the first byte on DialViewer's conn (the pipe, QEMU's leg done by
// Dial, the viewer's by Attach) and its ClientInit reaches the server
// shared; Close waits for the joining goroutine.
func TestDialViewerDirect(t *testing.T) {
	addr, shared := fakeRFBServer(t)
	f := testFactory(t, nil)
	r := resolveArgs(t, f, nil, "--target", addr, "--connect-insecure")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := r.DialViewer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := vncclient.Handshake(ctx, conn, vncclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s := <-shared; s != 1 {
		t.Errorf("ClientInit shared-flag %d", s)
	}
	if c.Name != "fake" || c.Width() != 2 || c.Height() != 1 {
		t.Errorf("ServerInit: %q %dx%d", c.Name, c.Width(), c.Height())
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Capture(); err != nil {
		t.Fatal(err)
	}
	if p := c.Image().RGBAAt(1, 0); p.B != 255 || p.R != 0 {
		t.Errorf("pixel 1,0 = %v", p)
	}
	closed := make(chan error, 1)
	go func() { closed <- conn.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

// TestDialViewerDirectUnreachable: a refused TCP connection is Dial's
// error, before any pipe.
func TestDialViewerDirectUnreachable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	r := resolveArgs(t, testFactory(t, nil), nil, "--target", addr, "--connect-insecure")
	_, err := r.DialViewer(context.Background())
	if err == nil {
		t.Fatal("dialled a closed port")
	}
	if code := cmdutil.ExitCode(err); code != cmdutil.ExitUnreachable {
		t.Errorf("exit code %d for %v", code, err)
	}
}
