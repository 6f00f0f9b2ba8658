package serial

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
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

func (r *recorder) Write(p []byte) (int, error) {
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

// TestCoalescedByteRecords documents a cheaper form of the workaround,
// not in use yet: QEMU 7.2 also consumes a paste sent one byte per TLS
// record when all the records arrive in one TCP write (its TLS library
// reads a record at a time, so the rest stay in the socket, which stays
// readable), while the same paste in one record stalls after its first
// byte. The form costs one syscall per paste instead of one per byte
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
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	below := &gatherConn{Conn: raw}
	c := tls.Client(below, creds.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1"))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &coalescedByteRecords{c, below}
	readUntil(t, c, "(qemu)")
	const commands = 20
	if _, err := w.Write([]byte(strings.Repeat("info version\r", commands))); err != nil {
		t.Fatal(err)
	}
	if below.flushes != 1 {
		t.Fatalf("%d TCP writes for the paste, want 1", below.flushes)
	}
	for range commands {
		readUntil(t, c, "\r\n(qemu)")
	}
	if _, err := w.Write([]byte("quit\r")); err != nil {
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

// gatherConn holds what is written to it while gathering and sends it in
// one Write at flush. Tests only: one writer, no concurrent TLS writes
// (a real one would need a lock against tls.Conn's own writes).
type gatherConn struct {
	net.Conn
	gather  bool
	buf     []byte
	flushes int
}

func (g *gatherConn) Write(p []byte) (int, error) {
	if g.gather {
		g.buf = append(g.buf, p...)
		return len(p), nil
	}
	return g.Conn.Write(p)
}

func (g *gatherConn) flush() error {
	g.gather = false
	g.flushes++
	_, err := g.Conn.Write(g.buf)
	g.buf = g.buf[:0]
	return err
}

// coalescedByteRecords writes each byte in its own TLS record, as
// ByteRecords does, but all of one Write's records in one TCP write.
type coalescedByteRecords struct {
	*tls.Conn
	below *gatherConn
}

func (c *coalescedByteRecords) Write(p []byte) (int, error) {
	c.below.gather = true
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			c.below.gather = false
			return 0, err
		}
	}
	if err := c.below.flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}
