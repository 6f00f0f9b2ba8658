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
