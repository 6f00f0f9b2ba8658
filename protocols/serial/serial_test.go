package serial

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// TestPastedLineReachesTLSChardev types a whole command in one write into
// QEMU's monitor on a TLS chardev, through the Handshaker's conn: QEMU
// must run it. Without ByteRecords QEMU 7.2 stalls after the first byte
// (see the package comment); the raw conn case documents that.
func TestPastedLineReachesTLSChardev(t *testing.T) {
	qemutest.Require(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	creds, err := tlscreds.Load(dir, tlscreds.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	q, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	raw, err := tls.Dial("tcp", addr, creds.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	target := protocols.Target{Kind: protocols.KindSerial, Address: addr}
	c, info, err := Handshaker{}.Server(context.Background(), raw, target)
	if err != nil || info.Auth != "tls" {
		t.Fatalf("Server: %v %+v", err, info)
	}
	readUntil(t, c, "(qemu)")
	if _, err := c.Write([]byte("info version\r")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "\r\n(qemu)")
	if _, err := c.Write([]byte("quit\r")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for q.Alive() {
		if time.Now().After(deadline) {
			t.Fatal("QEMU did not run the pasted 'quit'")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readUntil(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got strings.Builder
	buf := make([]byte, 1024)
	for !strings.Contains(got.String(), want) {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil && err != io.EOF {
			t.Fatalf("waiting for %q: %v (got %q)", want, err, got.String())
		}
		if err == io.EOF {
			t.Fatalf("EOF waiting for %q (got %q)", want, got.String())
		}
	}
}

// Plain targets are not wrapped.
func TestPlainTargetUnwrapped(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c, _, err := Handshaker{}.Server(context.Background(), a, protocols.Target{Kind: protocols.KindSerial, Address: "x:1", Insecure: true})
	if err != nil || c != a {
		t.Fatalf("insecure target wrapped: %T %v", c, err)
	}
}

// ByteRecords writes every byte, one Write each, and reports the count.
func TestByteRecordsWrites(t *testing.T) {
	rec := &recorder{}
	n, err := ByteRecords(rec).Write([]byte("abc"))
	if n != 3 || err != nil || len(rec.writes) != 3 || strings.Join(rec.writes, "") != "abc" {
		t.Fatalf("n=%d err=%v writes=%q", n, err, rec.writes)
	}
}

type recorder struct {
	net.Conn
	writes []string
}

func (r *recorder) Close() error { return nil }

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

// TestCoalescedByteRecords: through tunnel.DialTarget, as the proxy and
// "virtconsole serial" dial, a paste goes one byte per TLS record but in
// one TCP write, and QEMU 7.2 runs every pasted command: its TLS library
// reads a record at a time, so the rest stay readable on the socket. (The
// same paste in one record stalls after its first byte: see the package
// comment.) One write per record cost a syscall per byte
// (BenchmarkPasteToTLSChardev).
func TestCoalescedByteRecords(t *testing.T) {
	qemutest.Require(t)
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	creds, err := tlscreds.Load(dir, tlscreds.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	q, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	d := &countingDialer{}
	target := protocols.Target{Kind: protocols.KindSerial, Address: addr}
	raw, err := tunnel.DialTarget(context.Background(), d, target, creds.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	c, _, err := Handshaker{}.Server(context.Background(), raw, target)
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, c, "(qemu)")
	const commands = 20
	paste := strings.Repeat("info version\r", commands)
	before := d.conn.writes.Load()
	if _, err := c.Write([]byte(paste)); err != nil {
		t.Fatal(err)
	}
	if n := d.conn.writes.Load() - before; n > 1 {
		t.Errorf("%d TCP writes for a paste of %d bytes, want 1", n, len(paste))
	}
	for range commands {
		readUntil(t, c, "\r\n(qemu)")
	}
	if _, err := c.Write([]byte("quit\r")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for q.Alive() {
		if time.Now().After(deadline) {
			t.Fatal("QEMU did not run the pasted 'quit'")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingDialer dials TCP and counts the writes on the conn it made.
type countingDialer struct{ conn *countingConn }

func (d *countingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := new(net.Dialer).DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	d.conn = &countingConn{Conn: c}
	return d.conn, nil
}

type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestByteRecordsGathered: over a conn that gathers, every byte still
// goes in its own Write to the TLS layer, and the records of a long Write
// are sent in chunks of gatherBytes.
func TestByteRecordsGathered(t *testing.T) {
	rec := &recorder{}
	g := &gatherRecorder{}
	w := ByteRecords(tlsLike{rec, g})
	p := []byte(strings.Repeat("x", 2*gatherBytes+1))
	n, err := w.Write(p)
	if n != len(p) || err != nil || len(rec.writes) != len(p) {
		t.Fatalf("n=%d err=%v writes=%d", n, err, len(rec.writes))
	}
	if g.calls != 3 {
		t.Fatalf("%d gathers for %d bytes, want 3", g.calls, len(p))
	}
}

// tlsLike is a conn with a NetConn below it, as *tls.Conn has.
type tlsLike struct {
	*recorder
	below net.Conn
}

func (c tlsLike) NetConn() net.Conn { return c.below }

type gatherRecorder struct {
	net.Conn
	calls int
}

func (g *gatherRecorder) Gather(f func() error) error { g.calls++; return f() }

// TestPasteRateLimited: toward a TLS chardev a paste past the burst goes
// at PasteRate, and closing the conn ends a write waiting for the rate.
// Without the limit a paste took the proxy's CPU for as long as it lasted
// (about 0.2 s a MiB), as fast as the viewer sent it.
func TestPasteRateLimited(t *testing.T) {
	target := protocols.Target{Kind: protocols.KindSerial, Address: "127.0.0.1:1"}
	const perSecond = 256 << 10
	c, _, err := Handshaker{PasteRate: perSecond}.Server(context.Background(), &recorder{}, target)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := c.Write(make([]byte, pasteBurst)); n != pasteBurst || err != nil {
		t.Fatalf("burst: n=%d err=%v", n, err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("the first %d bytes took %v: a burst must not wait", pasteBurst, d)
	}
	const more = perSecond / 2
	if n, err := c.Write(make([]byte, more)); n != more || err != nil {
		t.Fatalf("past the burst: n=%d err=%v", n, err)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("%d bytes past the burst took %v at %d B/s, want about 0.5 s", more, d, perSecond)
	}

	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 4*perSecond))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a write waiting for the rate succeeded after Close")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a write waiting for the rate")
	}
}

// The zero Handshaker limits at DefaultPasteRate; a negative rate, not at all.
func TestPasteRateDefault(t *testing.T) {
	target := protocols.Target{Kind: protocols.KindSerial, Address: "127.0.0.1:1"}
	c, _, _ := Handshaker{}.Server(context.Background(), &recorder{}, target)
	if d := c.(*byteRecords).perByte; d != time.Second/DefaultPasteRate {
		t.Fatalf("zero Handshaker: %v a byte, want %d B/s", d, DefaultPasteRate)
	}
	c, _, _ = Handshaker{PasteRate: -1}.Server(context.Background(), &recorder{}, target)
	if c.(*byteRecords).perByte != 0 {
		t.Fatal("PasteRate -1 is limited")
	}
}
