package vnc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"

	"github.com/virtconsole/virtconsole/protocols"
)

// testTimeout bounds every handshake in the tests.
const testTimeout = 10 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fakeQEMU listens on loopback and runs script on the first connection
// it accepts, in a goroutine the test waits for at cleanup. script's
// error fails the test. It returns the address to dial.
func fakeQEMU(t testing.TB, script func(c net.Conn) error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := l.Accept()
		l.Close()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		if err := script(c); err != nil {
			t.Errorf("fake QEMU: %v", err)
		}
	}()
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().String()
}

// dial connects to addr and closes the conn at cleanup.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxySession plays the proxy: it dials QEMU at target.Address and runs
// h.Server, then h.Client on the proxy end of a loopback TCP pair, and
// joins the two with io.Copy. It returns the viewer's end, whose
// handshake the caller drives with the viewer function in a goroutine
// started before Client runs.
func proxySession(t testing.TB, h protocols.Handshaker, target protocols.Target, viewer func(c net.Conn) error) (protocols.Info, error) {
	t.Helper()
	return proxySessionOver(t, dial(t, target.Address), h, target, viewer)
}

// proxySessionOver is proxySession over q, a conn to QEMU.
func proxySessionOver(t testing.TB, q net.Conn, h protocols.Handshaker, target protocols.Target, viewer func(c net.Conn) error) (protocols.Info, error) {
	t.Helper()
	ctx := testContext(t)
	server, info, err := h.Server(ctx, q, target)
	if err != nil {
		return info, err
	}
	vEnd, pEnd := nettest.TCPPair(t)
	vErr := make(chan error, 1)
	go func() {
		vEnd.SetDeadline(time.Now().Add(testTimeout))
		vErr <- viewer(vEnd)
		vEnd.Close()
	}()
	client, server, err := h.Client(ctx, pEnd, server)
	if err != nil {
		return info, err
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(server, client); server.Close() }()
	go func() { defer wg.Done(); io.Copy(client, server); client.Close() }()
	err = <-vErr
	client.Close()
	server.Close()
	wg.Wait()
	return info, err
}

// serverInit is the ServerInit message (RFC 6143 §7.3.2) the fake QEMU
// sends and the viewer checks.
type serverInit struct {
	Width, Height uint16
	Name          string
}

func (s serverInit) bytes() []byte {
	b := binary.BigEndian.AppendUint16(nil, s.Width)
	b = binary.BigEndian.AppendUint16(b, s.Height)
	// Pixel format: 32 bpp, depth 24, little endian, true colour.
	b = append(b, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Name)))
	return append(b, s.Name...)
}

func readServerInit(r io.Reader) (serverInit, error) {
	var h [24]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return serverInit{}, fmt.Errorf("ServerInit: %w", err)
	}
	n := binary.BigEndian.Uint32(h[20:])
	if n > 1024 {
		return serverInit{}, fmt.Errorf("ServerInit name length %d", n)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return serverInit{}, fmt.Errorf("ServerInit name: %w", err)
	}
	return serverInit{binary.BigEndian.Uint16(h[0:]), binary.BigEndian.Uint16(h[2:]), string(name)}, nil
}

var wantInit = serverInit{Width: 720, Height: 400, Name: "QEMU"}

// expect reads len(want) bytes from r and compares them with want.
func expect(r io.Reader, want []byte, what string) error {
	got := make([]byte, len(want))
	if _, err := io.ReadFull(r, got); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: got % x, want % x", what, got, want)
	}
	return nil
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func reasonBytes(s string) []byte { return append(u32(uint32(len(s))), s...) }

// viewerScript returns a viewer speaking RFB version ver (a 12-byte
// ProtocolVersion) through the handshake to ServerInit, checked against
// want.
func viewerScript(ver string, want serverInit) func(c net.Conn) error {
	var got serverInit
	read := viewerReading(ver, &got)
	return func(c net.Conn) error {
		if err := read(c); err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("ServerInit %+v, want %+v", got, want)
		}
		return nil
	}
}

// viewerReading is a viewer like viewerScript's that stores the
// ServerInit it reads in got.
func viewerReading(ver string, got *serverInit) func(c net.Conn) error {
	return func(c net.Conn) error {
		if err := expect(c, []byte(ProtocolVersion38), "proxy's version"); err != nil {
			return err
		}
		if _, err := c.Write([]byte(ver)); err != nil {
			return err
		}
		major, minor, _ := parseVersion([]byte(ver))
		switch {
		case major == 3 && minor == 8:
			if err := expect(c, []byte{1, 1}, "security types"); err != nil {
				return err
			}
			c.Write([]byte{1})
			if err := expect(c, u32(0), "security result"); err != nil {
				return err
			}
		case major == 3 && minor == 7:
			if err := expect(c, []byte{1, 1}, "security types"); err != nil {
				return err
			}
			c.Write([]byte{1})
		default:
			if err := expect(c, u32(1), "3.3 security type"); err != nil {
				return err
			}
		}
		c.Write([]byte{1}) // ClientInit, shared
		var err error
		*got, err = readServerInit(c)
		return err
	}
}

// qemuNone is a fake QEMU speaking RFB version ver with security type
// None, through ServerInit.
func qemuNone(ver string) func(c net.Conn) error {
	return func(c net.Conn) error {
		c.Write([]byte(ver))
		major, minor, _ := parseVersion([]byte(ver))
		answer := ProtocolVersion38
		switch {
		case major == 3 && minor == 7:
			answer = ProtocolVersion37
		case major == 3 && minor != 8:
			answer = ProtocolVersion33
		}
		if err := expect(c, []byte(answer), "client version"); err != nil {
			return err
		}
		switch answer {
		case ProtocolVersion33:
			c.Write(u32(1))
		default:
			c.Write([]byte{1, 1})
			if err := expect(c, []byte{1}, "security type choice"); err != nil {
				return err
			}
			if answer == ProtocolVersion38 {
				c.Write(u32(0))
			}
		}
		if err := expect(c, []byte{1}, "ClientInit"); err != nil {
			return err
		}
		_, err := c.Write(wantInit.bytes())
		return err
	}
}

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// localhost, minted with crypto/x509 for the scripted TLS tests.
type testPKI struct {
	server *tls.Config
	roots  *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vnc test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &testPKI{
		server: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		roots:  roots,
	}
}

// handshaker returns a Handshaker that trusts the PKI's CA.
func (p *testPKI) handshaker() *Handshaker {
	return &Handshaker{TLSConfig: func(string) *tls.Config {
		return &tls.Config{RootCAs: p.roots, MinVersion: tls.VersionTLS12}
	}}
}

// qemuVeNCrypt is a fake QEMU offering VeNCrypt with sub-type sub over
// TLS with cfg; for X509Vnc it checks the response against password and
// fails with QEMU's reason when it does not match.
func qemuVeNCrypt(cfg *tls.Config, sub VeNCryptSubtype, password string) func(c net.Conn) error {
	return func(c net.Conn) error {
		c.Write([]byte(ProtocolVersion38))
		if err := expect(c, []byte(ProtocolVersion38), "client version"); err != nil {
			return err
		}
		c.Write([]byte{1, byte(SecurityVeNCrypt)})
		if err := expect(c, []byte{byte(SecurityVeNCrypt)}, "security type"); err != nil {
			return err
		}
		c.Write([]byte{0, 2})
		if err := expect(c, []byte{0, 2}, "VeNCrypt version"); err != nil {
			return err
		}
		c.Write(append([]byte{0, 1}, u32(uint32(sub))...))
		if err := expect(c, u32(uint32(sub)), "sub-type"); err != nil {
			return err
		}
		c.Write([]byte{1})
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return nil // the client gave up; its test checks why
		}
		if sub == VeNCryptX509VNC {
			var ch [16]byte
			rand.Read(ch[:])
			tc.Write(ch[:])
			var resp [16]byte
			if _, err := io.ReadFull(tc, resp[:]); err != nil {
				return err
			}
			if resp != vncAuthResponse(password, ch) {
				tc.Write(append(u32(1), reasonBytes("Authentication failed")...))
				return nil
			}
		}
		tc.Write(u32(0))
		if err := expect(tc, []byte{1}, "ClientInit"); err != nil {
			return err
		}
		_, err := tc.Write(wantInit.bytes())
		return err
	}
}
