package vnc

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// memConn is a net.Conn whose reads come from a fixed byte slice (then
// io.EOF) and whose writes are kept: a peer that has said everything it
// will say. It also records the largest read asked for, to check that
// no length from the wire sizes a read.
type memConn struct {
	r       *bytes.Reader
	w       bytes.Buffer
	maxRead int
}

func newMemConn(b []byte) *memConn { return &memConn{r: bytes.NewReader(b)} }

func (c *memConn) Read(p []byte) (int, error) {
	c.maxRead = max(c.maxRead, len(p))
	return c.r.Read(p)
}
func (c *memConn) Write(p []byte) (int, error)        { return c.w.Write(p) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// maxFuzzRead bounds any single read: handshake messages are small, and
// crypto/tls reads records of at most about 16 KiB.
const maxFuzzRead = 64 << 10

// fuzzTargets are the policies each input is run against.
var fuzzTargets = []protocols.Target{
	{Kind: protocols.KindVNC, Address: "127.0.0.1:5900"},
	{Kind: protocols.KindVNC, Address: "127.0.0.1:5900", Password: "pw"},
	{Kind: protocols.KindVNC, Address: "127.0.0.1:5900", Insecure: true},
	{Kind: protocols.KindVNC, Address: "127.0.0.1:5900", Insecure: true, Password: "pw"},
	{Kind: protocols.KindVNC, Address: "127.0.0.1:5900", TLSTunnel: true, Password: "pw"},
}

// FuzzServerLeg feeds what a QEMU-side peer sends to Server under every
// policy: no panic, no hang, no read sized by the wire, and never a
// cleartext success for a target that requires TLS. Seeds include real
// QEMU 7.2 transcripts (testdata/fuzz/FuzzServerLeg/qemu-*, written by
// go test -run QEMU -update-corpus).
func FuzzServerLeg(f *testing.F) {
	for _, s := range []string{
		ProtocolVersion38 + "\x01\x01\x00\x00\x00\x00",
		ProtocolVersion37 + "\x01\x01",
		ProtocolVersion33 + "\x00\x00\x00\x01",
		ProtocolVersion33 + "\x00\x00\x00\x02" + strings.Repeat("\x11", 16) + "\x00\x00\x00\x00",
		ProtocolVersion33 + "\x00\x00\x00\x00\x00\x00\x00\x04nope",
		ProtocolVersion38 + "\x00\xff\xff\xff\xffreason",
		ProtocolVersion38 + "\x02\x02\x01" + strings.Repeat("\x22", 16) + "\x00\x00\x00\x01\x00\x00\x00\x05wrong",
		ProtocolVersion38 + "\x01\x14",
		ProtocolVersion38 + "\x01\x13\x00\x02\x00\x02\x00\x00\x01\x01\x00\x00\x01\x02\x01",
		ProtocolVersion38 + "\x01\x13\x00\x02\x00\x01\x00\x00\x01\x04\x01\x16\x03\x03\x00\x05hello",
		ProtocolVersion38 + "\x01\x13\x00\x01",
		"RFB 003.889\n\x00\x00\x00\x01",
		"RFB 005.000\n\x01\x01\x00\x00\x00\x00",
		"SSH-2.0-OpenSSH_9.2\r\n",
	} {
		f.Add([]byte(s))
	}
	cfg := &tls.Config{RootCAs: x509.NewCertPool()}
	h := &Handshaker{TLSConfig: func(string) *tls.Config { return cfg }}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, target := range fuzzTargets {
			c := newMemConn(data)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conn, info, err := h.Server(ctx, c, target)
			cancel()
			if c.maxRead > maxFuzzRead {
				t.Fatalf("%v: a read of %d bytes", target, c.maxRead)
			}
			if err != nil {
				if msg := err.Error(); strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "vnc: ") {
					t.Fatalf("%v: error not one line starting vnc: %q", target, msg)
				}
				continue
			}
			if conn == nil || info.Auth == "" {
				t.Fatalf("%v: success without conn or Auth: %v %+v", target, conn, info)
			}
			if !target.Insecure && !target.TLSTunnel && !strings.HasPrefix(info.Auth, "vencrypt-") {
				t.Fatalf("%v: cleartext success (%s) for a target that requires TLS", target, info.Auth)
			}
		}
	})
}

// FuzzClientLeg feeds what a viewer sends to Client and Refuse: no panic,
// no hang, no read sized by the wire, and what they send starts with our
// version.
func FuzzClientLeg(f *testing.F) {
	for _, s := range []string{
		ProtocolVersion38 + "\x01\x01",
		ProtocolVersion37 + "\x01\x01",
		ProtocolVersion33 + "\x01",
		ProtocolVersion38 + "\x02",
		ProtocolVersion38 + "\x13",
		"RFB 003.889\n",
		"RFB 004.001\n\x01",
		"RFB 003.00x\n",
		"GET / HTTP/1.1\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	h := &Handshaker{}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v := newMemConn(data)
		q := newMemConn(nil)
		cv, cq, err := h.Client(ctx, v, q)
		if in, ok := cv.(*input); err == nil && (!ok || in.Conn != v || cq != q) {
			t.Fatal("Client changed the conns (other than the viewer's Input filter)")
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("error not one line: %q", err)
		}
		if !bytes.HasPrefix(v.w.Bytes(), []byte(ProtocolVersion38)) {
			t.Fatalf("Client sent %q first", v.w.Bytes())
		}
		if v.maxRead > versionLen {
			t.Fatalf("a read of %d bytes", v.maxRead)
		}
		if err == nil && q.w.Len() > 0 {
			t.Fatalf("Client wrote %q to QEMU", q.w.Bytes())
		}

		r := newMemConn(data)
		if err := Refuse(ctx, r, "QEMU is away"); err == nil && !bytes.HasPrefix(r.w.Bytes(), []byte(ProtocolVersion38)) {
			t.Fatalf("Refuse sent %q first", r.w.Bytes())
		}
	})
}
