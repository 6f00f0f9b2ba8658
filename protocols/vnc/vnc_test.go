package vnc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"

	"github.com/virtconsole/virtconsole/protocols"
)

var viewerVersions = []struct{ name, ver string }{
	{"3.3", ProtocolVersion33},
	{"3.7", ProtocolVersion37},
	{"3.8", ProtocolVersion38},
	{"3.889", "RFB 003.889\n"}, // Apple's: treated as 3.3 (RFC 6143 §7.1.1)
}

// Viewers of every version reach ServerInit through Server, Client and a
// plain io.Copy pair, against QEMUs of every version.
func TestViewerVersions(t *testing.T) {
	qemuVersions := []string{ProtocolVersion33, ProtocolVersion37, ProtocolVersion38, "RFB 003.889\n", "RFB 005.000\n"}
	for _, qv := range qemuVersions {
		for _, vv := range viewerVersions {
			t.Run(strings.TrimSpace(qv)+"/viewer-"+vv.name, func(t *testing.T) {
				addr := fakeQEMU(t, qemuNone(qv))
				info, err := proxySession(t, &Handshaker{}, protocols.Target{Kind: protocols.KindVNC, Address: addr, Insecure: true}, viewerScript(vv.ver, wantInit))
				if err != nil {
					t.Fatal(err)
				}
				if info.Auth != AuthNone {
					t.Errorf("Auth = %q, want %q", info.Auth, AuthNone)
				}
			})
		}
	}
}

// A target with TLSTunnel is already inside TLS: None is fine.
func TestTLSTunnelAllowsNone(t *testing.T) {
	addr := fakeQEMU(t, qemuNone(ProtocolVersion38))
	info, err := proxySession(t, &Handshaker{}, protocols.Target{Address: addr, TLSTunnel: true}, viewerScript(ProtocolVersion38, wantInit))
	if err != nil || info.Auth != AuthNone {
		t.Fatalf("info %+v, err %v", info, err)
	}
}

// qemuOffering is a fake QEMU that offers types (3.7+: a list; 3.3: the
// first as a u32), then records everything the client sends until it
// closes the connection.
func qemuOffering(ver string, types []SecurityType, got chan<- []byte) func(c net.Conn) error {
	return func(c net.Conn) error {
		c.Write([]byte(ver))
		if ver == ProtocolVersion33 {
			c.Write(u32(uint32(types[0])))
		} else {
			b := []byte{byte(len(types))}
			for _, t := range types {
				b = append(b, byte(t))
			}
			c.Write(b)
		}
		// Offer a challenge in case the client (wrongly) picks VNC auth.
		c.Write(bytes.Repeat([]byte{0x5a}, 16))
		all, _ := io.ReadAll(c)
		got <- all
		return nil
	}
}

// A target that is not insecure never falls back to cleartext, whatever
// QEMU offers: no security type is even chosen, no password sent.
func TestSecureTargetRefusesCleartext(t *testing.T) {
	cases := []struct {
		name  string
		ver   string
		types []SecurityType
	}{
		{"3.8 None+VNC", ProtocolVersion38, []SecurityType{SecurityNone, SecurityVNCAuth}},
		{"3.8 VNC", ProtocolVersion38, []SecurityType{SecurityVNCAuth}},
		{"3.8 None", ProtocolVersion38, []SecurityType{SecurityNone}},
		{"3.7 None+VNC", ProtocolVersion37, []SecurityType{SecurityVNCAuth, SecurityNone}},
		{"3.3 VNC", ProtocolVersion33, []SecurityType{SecurityVNCAuth}},
		{"3.3 None", ProtocolVersion33, []SecurityType{SecurityNone}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			addr := fakeQEMU(t, qemuOffering(tc.ver, tc.types, got))
			c := dial(t, addr)
			pki := newTestPKI(t)
			_, _, err := pki.handshaker().Server(testContext(t), c, protocols.Target{Address: addr, Password: "secret"})
			if err == nil {
				t.Fatal("Server succeeded over cleartext for a secure target")
			}
			if !strings.Contains(err.Error(), "mark the console insecure") {
				t.Errorf("error does not say what to do: %v", err)
			}
			t.Log(err)
			c.Close()
			if sent := <-got; string(sent) != tc.ver {
				t.Errorf("client sent %q; want nothing more than its version %q", sent, tc.ver)
			}
		})
	}
}

func TestUnsupportedSecurity(t *testing.T) {
	cases := []struct {
		name   string
		target protocols.Target
		types  []SecurityType
		want   string
	}{
		{"SASL only", protocols.Target{}, []SecurityType{SecuritySASL}, "offers only SASL"},
		{"SASL only insecure", protocols.Target{Insecure: true}, []SecurityType{SecuritySASL}, "offers only SASL"},
		{"Tight", protocols.Target{}, []SecurityType{SecurityTight}, "offered: Tight"},
		{"VNC auth without password", protocols.Target{Insecure: true}, []SecurityType{SecurityVNCAuth}, "resolver gave none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			addr := fakeQEMU(t, qemuOffering(ProtocolVersion38, tc.types, got))
			c := dial(t, addr)
			tc.target.Address = addr
			_, _, err := newTestPKI(t).handshaker().Server(testContext(t), c, tc.target)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			t.Log(err)
			c.Close()
			<-got
		})
	}
}

// Insecure targets without TLS credentials cannot do VeNCrypt, and say so.
func TestVeNCryptWithoutCredentials(t *testing.T) {
	got := make(chan []byte, 1)
	addr := fakeQEMU(t, qemuOffering(ProtocolVersion38, []SecurityType{SecurityVeNCrypt}, got))
	c := dial(t, addr)
	_, _, err := (&Handshaker{}).Server(testContext(t), c, protocols.Target{Address: addr, Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "no TLS client credentials") {
		t.Fatalf("err = %v", err)
	}
	c.Close()
	<-got
}

// qemuSubtypes is a fake QEMU offering VeNCrypt sub-types subs, then
// recording what the client sends.
func qemuSubtypes(subs []VeNCryptSubtype, got chan<- []byte) func(c net.Conn) error {
	return func(c net.Conn) error {
		b := []byte(ProtocolVersion38)
		b = append(b, 1, byte(SecurityVeNCrypt), 0, 2, 0, byte(len(subs)))
		for _, s := range subs {
			b = append(b, u32(uint32(s))...)
		}
		c.Write(b)
		all, _ := io.ReadAll(c)
		got <- all
		return nil
	}
}

func TestUnsupportedSubtypes(t *testing.T) {
	cases := []struct {
		name string
		subs []VeNCryptSubtype
		want string
	}{
		{"anonymous", []VeNCryptSubtype{VeNCryptTLSNone, VeNCryptTLSVNC}, "anonymous TLS"},
		{"plain", []VeNCryptSubtype{VeNCryptPlain, VeNCryptX509Plain}, "no VeNCrypt x509 sub-type"},
		{"SASL", []VeNCryptSubtype{VeNCryptX509SASL}, "SASL"},
		{"X509Vnc without password", []VeNCryptSubtype{VeNCryptX509VNC}, "resolver gave none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			addr := fakeQEMU(t, qemuSubtypes(tc.subs, got))
			c := dial(t, addr)
			_, _, err := newTestPKI(t).handshaker().Server(testContext(t), c, protocols.Target{Address: addr})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			t.Log(err)
			c.Close()
			// The client answered version and type, and chose no sub-type.
			want := ProtocolVersion38 + "\x13\x00\x02"
			if sent := <-got; string(sent) != want {
				t.Errorf("client sent %q, want %q", sent, want)
			}
		})
	}
}

// VeNCrypt over a scripted QEMU with a throwaway PKI: both sub-types,
// right and wrong passwords, and a certificate from another CA.
func TestScriptedVeNCrypt(t *testing.T) {
	pki := newTestPKI(t)
	t.Run("X509None", func(t *testing.T) {
		addr := fakeQEMU(t, qemuVeNCrypt(pki.server, VeNCryptX509None, ""))
		info, err := proxySession(t, pki.handshaker(), protocols.Target{Address: addr}, viewerScript(ProtocolVersion38, wantInit))
		if err != nil || info.Auth != AuthVeNCryptX509None {
			t.Fatalf("info %+v, err %v", info, err)
		}
	})
	t.Run("X509Vnc", func(t *testing.T) {
		addr := fakeQEMU(t, qemuVeNCrypt(pki.server, VeNCryptX509VNC, "s3cret"))
		info, err := proxySession(t, pki.handshaker(), protocols.Target{Address: addr, Password: "s3cret"}, viewerScript(ProtocolVersion37, wantInit))
		if err != nil || info.Auth != AuthVeNCryptX509VNC {
			t.Fatalf("info %+v, err %v", info, err)
		}
	})
	t.Run("X509Vnc wrong password", func(t *testing.T) {
		addr := fakeQEMU(t, qemuVeNCrypt(pki.server, VeNCryptX509VNC, "s3cret"))
		_, err := proxySession(t, pki.handshaker(), protocols.Target{Address: addr, Password: "guess"}, nil)
		var he *protocols.HandshakeError
		if !errors.As(err, &he) || he.Reason != "Authentication failed" {
			t.Fatalf("err = %v, want a HandshakeError with QEMU's reason", err)
		}
		if !strings.Contains(err.Error(), "check the VNC password") {
			t.Errorf("error does not say what to do: %v", err)
		}
		t.Log(err)
	})
	t.Run("other CA", func(t *testing.T) {
		other := newTestPKI(t)
		addr := fakeQEMU(t, qemuVeNCrypt(other.server, VeNCryptX509None, ""))
		_, err := proxySession(t, pki.handshaker(), protocols.Target{Address: addr}, nil)
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Fatalf("err = %v, want a verification error", err)
		}
		t.Log(err)
	})
	t.Run("wrong host name", func(t *testing.T) {
		addr := fakeQEMU(t, qemuVeNCrypt(pki.server, VeNCryptX509None, ""))
		h := pki.handshaker()
		var asked string
		base := h.TLSConfig
		h.TLSConfig = func(host string) *tls.Config { asked = host; return base(host) }
		c := dial(t, addr)
		_, port, _ := net.SplitHostPort(addr)
		// The certificate names 127.0.0.1 and localhost, not 127.0.0.2.
		_, _, err := h.Server(testContext(t), c, protocols.Target{Address: "127.0.0.2:" + port})
		if err == nil || !strings.Contains(err.Error(), "certificate is valid for") {
			t.Fatalf("err = %v, want a host name verification error", err)
		}
		if asked != "127.0.0.2" {
			t.Errorf("TLSConfig asked for %q, want the target's host", asked)
		}
		c.Close()
	})
}

// QEMU's failure reasons reach the caller as a HandshakeError, in every
// version that carries one.
func TestQEMURefuses(t *testing.T) {
	for _, ver := range []string{ProtocolVersion33, ProtocolVersion38} {
		t.Run(strings.TrimSpace(ver), func(t *testing.T) {
			addr := fakeQEMU(t, func(c net.Conn) error {
				c.Write([]byte(ver))
				io.ReadFull(c, make([]byte, 12))
				if ver == ProtocolVersion33 {
					c.Write(u32(0))
				} else {
					c.Write([]byte{0})
				}
				c.Write(reasonBytes("Too many\nclients"))
				return nil
			})
			c := dial(t, addr)
			_, _, err := (&Handshaker{}).Server(testContext(t), c, protocols.Target{Address: addr, Insecure: true})
			var he *protocols.HandshakeError
			if !errors.As(err, &he) || he.Reason != "Too many clients" {
				t.Fatalf("err = %v, want a HandshakeError with QEMU's reason on one line", err)
			}
		})
	}
}

// Plain VNC authentication on an insecure target: the right password
// passes, a wrong one gives QEMU's reason (3.8) or a generic one (3.7).
func TestInsecureVNCAuth(t *testing.T) {
	qemu := func(ver, password string) func(c net.Conn) error {
		return func(c net.Conn) error {
			c.Write([]byte(ver))
			if err := expect(c, []byte(ver), "version"); err != nil {
				return err
			}
			c.Write([]byte{1, byte(SecurityVNCAuth)})
			if err := expect(c, []byte{byte(SecurityVNCAuth)}, "choice"); err != nil {
				return err
			}
			ch := [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
			c.Write(ch[:])
			var resp [16]byte
			io.ReadFull(c, resp[:])
			if resp != vncAuthResponse(password, ch) {
				c.Write(u32(1))
				if ver == ProtocolVersion38 {
					c.Write(reasonBytes("Authentication failed"))
				}
				return nil
			}
			c.Write(u32(0))
			return nil
		}
	}
	for _, ver := range []string{ProtocolVersion37, ProtocolVersion38} {
		t.Run(strings.TrimSpace(ver), func(t *testing.T) {
			addr := fakeQEMU(t, qemu(ver, "pw"))
			_, info, err := (&Handshaker{}).Server(testContext(t), dial(t, addr), protocols.Target{Address: addr, Insecure: true, Password: "pw"})
			if err != nil || info.Auth != AuthVNC {
				t.Fatalf("info %+v, err %v", info, err)
			}
			addr = fakeQEMU(t, qemu(ver, "pw"))
			_, _, err = (&Handshaker{}).Server(testContext(t), dial(t, addr), protocols.Target{Address: addr, Insecure: true, Password: "wrong"})
			var he *protocols.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want a HandshakeError", err)
			}
			if want := map[string]string{ProtocolVersion37: "authentication failed", ProtocolVersion38: "Authentication failed"}[ver]; he.Reason != want {
				t.Errorf("reason %q, want %q", he.Reason, want)
			}
		})
	}
}

// The VNC authentication key is the password cut to 8 bytes with each
// byte's bits reversed: "pw" and "pw\x00" give the same response, and
// only the first 8 bytes count.
func TestVNCAuthResponse(t *testing.T) {
	var ch [16]byte
	copy(ch[:], "0123456789abcdef")
	if vncAuthResponse("pw", ch) != vncAuthResponse("pw\x00\x00", ch) {
		t.Error("zero padding changes the response")
	}
	if vncAuthResponse("12345678", ch) != vncAuthResponse("123456789", ch) {
		t.Error("bytes past the 8th change the response")
	}
	if vncAuthResponse("a", ch) == vncAuthResponse("b", ch) {
		t.Error("different passwords give the same response")
	}
	// Bit reversal: DES ignores each key byte's lowest bit, which after
	// reversal is the password byte's highest bit; 'a' (0x61) and 0xe1
	// must therefore give the same response, and 'a' and '`' (0x60) not.
	if vncAuthResponse("a", ch) != vncAuthResponse("\xe1", ch) {
		t.Error("key bytes are not bit-reversed")
	}
	if vncAuthResponse("a", ch) == vncAuthResponse("`", ch) {
		t.Error("key bytes are not bit-reversed")
	}
}

// Reason strings are bounded: a 4 GiB length costs 4 KiB.
func TestOversizeReason(t *testing.T) {
	for _, where := range []string{"types", "result"} {
		t.Run(where, func(t *testing.T) {
			addr := fakeQEMU(t, func(c net.Conn) error {
				c.Write([]byte(ProtocolVersion38))
				io.ReadFull(c, make([]byte, 12))
				if where == "types" {
					c.Write([]byte{0})
				} else {
					c.Write([]byte{1, 1})
					io.ReadFull(c, make([]byte, 1))
					c.Write(u32(1))
				}
				c.Write(u32(0xffffffff))
				c.Write(bytes.Repeat([]byte("x"), 2*MaxReasonLen))
				io.Copy(io.Discard, c) // wait for the client to close
				return nil
			})
			c := dial(t, addr)
			_, _, err := (&Handshaker{}).Server(testContext(t), c, protocols.Target{Address: addr, Insecure: true})
			c.Close()
			var he *protocols.HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want a HandshakeError", err)
			}
			if len(he.Reason) > MaxReasonLen+len(" [cut]") || !strings.HasSuffix(he.Reason, " [cut]") {
				t.Errorf("reason of %d bytes, want at most %d and marked cut", len(he.Reason), MaxReasonLen)
			}
		})
	}
}

// A silent or slow peer costs the context's deadline, not forever; a
// cancelled context ends the handshake at once.
func TestSilentPeer(t *testing.T) {
	const deadline = 300 * time.Millisecond
	check := func(t *testing.T, run func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		start := time.Now()
		err := run(ctx)
		took := time.Since(start)
		if err == nil {
			t.Fatal("handshake with a silent peer succeeded")
		}
		if took < deadline-50*time.Millisecond || took > deadline+2*time.Second {
			t.Errorf("took %v, want about %v", took, deadline)
		}
		if !strings.Contains(err.Error(), "in time") {
			t.Errorf("error does not say the peer was too slow: %v", err)
		}
		t.Log(err)
	}
	silent := func(c net.Conn) error { io.Copy(io.Discard, c); return nil }
	t.Run("QEMU says nothing", func(t *testing.T) {
		addr := fakeQEMU(t, silent)
		c := dial(t, addr)
		check(t, func(ctx context.Context) error {
			_, _, err := (&Handshaker{}).Server(ctx, c, protocols.Target{Address: addr, Insecure: true})
			return err
		})
		c.Close()
	})
	t.Run("QEMU stops mid-handshake", func(t *testing.T) {
		addr := fakeQEMU(t, func(c net.Conn) error {
			c.Write([]byte(ProtocolVersion38 + "\x01"))
			return silent(c)
		})
		c := dial(t, addr)
		check(t, func(ctx context.Context) error {
			_, _, err := (&Handshaker{}).Server(ctx, c, protocols.Target{Address: addr, Insecure: true})
			return err
		})
		c.Close()
	})
	t.Run("QEMU stops in TLS", func(t *testing.T) {
		addr := fakeQEMU(t, func(c net.Conn) error {
			c.Write([]byte(ProtocolVersion38 + "\x01\x13\x00\x02\x00\x01\x00\x00\x01\x04\x01"))
			return silent(c)
		})
		c := dial(t, addr)
		check(t, func(ctx context.Context) error {
			_, _, err := newTestPKI(t).handshaker().Server(ctx, c, protocols.Target{Address: addr})
			return err
		})
		c.Close()
	})
	t.Run("viewer says nothing", func(t *testing.T) {
		v, p := nettest.TCPPair(t)
		go silent(v)
		check(t, func(ctx context.Context) error {
			_, _, err := (&Handshaker{}).Client(ctx, p, nil)
			return err
		})
	})
	t.Run("viewer stops after version", func(t *testing.T) {
		v, p := nettest.TCPPair(t)
		go func() { v.Write([]byte(ProtocolVersion38)); silent(v) }()
		check(t, func(ctx context.Context) error {
			_, _, err := (&Handshaker{}).Client(ctx, p, nil)
			return err
		})
	})
	t.Run("Refuse to a silent viewer", func(t *testing.T) {
		v, p := nettest.TCPPair(t)
		go silent(v)
		check(t, func(ctx context.Context) error { return Refuse(ctx, p, "no") })
	})
	t.Run("cancelled", func(t *testing.T) {
		addr := fakeQEMU(t, silent)
		c := dial(t, addr)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, _, err := (&Handshaker{}).Server(ctx, c, protocols.Target{Address: addr, Insecure: true})
		if err == nil || !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
			t.Fatalf("err = %v after %v", err, time.Since(start))
		}
		c.Close()
	})
}

// After a successful handshake the deadline is gone: a pass-through
// session outlives the handshake's context.
func TestDeadlineCleared(t *testing.T) {
	addr := fakeQEMU(t, func(c net.Conn) error {
		if err := qemuNone(ProtocolVersion38)(c); err != nil {
			return err
		}
		time.Sleep(400 * time.Millisecond)
		_, err := c.Write([]byte("late"))
		return err
	})
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	q, _, err := (&Handshaker{}).Server(ctx, c, protocols.Target{Address: addr, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	q.Write([]byte{1})
	if _, err := readServerInit(q); err != nil {
		t.Fatal(err)
	}
	if err := expect(q, []byte("late"), "bytes after the deadline"); err != nil {
		t.Fatal(err)
	}
}

func TestClientRejects(t *testing.T) {
	t.Run("garbage version", func(t *testing.T) {
		v, p := nettest.TCPPair(t)
		go func() { io.ReadFull(v, make([]byte, 12)); v.Write([]byte("GET / HTTP/1.1\r\n")) }()
		_, _, err := (&Handshaker{}).Client(testContext(t), p, nil)
		if err == nil || !strings.Contains(err.Error(), "did not answer with an RFB version") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("wrong security type", func(t *testing.T) {
		v, p := nettest.TCPPair(t)
		got := make(chan []byte, 1)
		go func() {
			io.ReadFull(v, make([]byte, 12))
			v.Write([]byte(ProtocolVersion38))
			io.ReadFull(v, make([]byte, 2))
			v.Write([]byte{byte(SecurityVNCAuth)})
			b, _ := io.ReadAll(v)
			got <- b
		}()
		_, _, err := (&Handshaker{}).Client(testContext(t), p, nil)
		if err == nil || !strings.Contains(err.Error(), "chose security type VNC") {
			t.Fatalf("err = %v", err)
		}
		p.Close()
		want := append(u32(1), reasonBytes("only security type None is offered")...)
		if b := <-got; !bytes.Equal(b, want) {
			t.Errorf("viewer got % x, want a failed SecurityResult % x", b, want)
		}
	})
}

// Refuse serves every viewer version and delivers the reason in the form
// the version supports.
func TestRefuse(t *testing.T) {
	const reason = "QEMU at 127.0.0.1:5901 is unreachable"
	for _, vv := range viewerVersions {
		t.Run(vv.name, func(t *testing.T) {
			v, p := nettest.TCPPair(t)
			done := make(chan error, 1)
			go func() {
				done <- func() error {
					v.SetDeadline(time.Now().Add(testTimeout))
					if err := expect(v, []byte(ProtocolVersion38), "version"); err != nil {
						return err
					}
					v.Write([]byte(vv.ver))
					head := []byte{0}
					if vv.name != "3.7" && vv.name != "3.8" {
						head = u32(0)
					}
					return expect(v, append(head, reasonBytes(reason)...), "refusal")
				}()
			}()
			if err := Refuse(testContext(t), p, reason); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("long reason", func(t *testing.T) {
		v, p := nettest.TCPPair(t)
		go Refuse(testContext(t), p, strings.Repeat("é", MaxReasonLen))
		v.SetDeadline(time.Now().Add(testTimeout))
		io.ReadFull(v, make([]byte, 12))
		v.Write([]byte(ProtocolVersion38))
		var head [5]byte
		if _, err := io.ReadFull(v, head[:]); err != nil {
			t.Fatal(err)
		}
		if n := binary.BigEndian.Uint32(head[1:]); n > MaxReasonLen {
			t.Errorf("reason of %d bytes, want at most %d", n, MaxReasonLen)
		}
	})
}

func BenchmarkHandshake(b *testing.B) {
	b.Run("None", func(b *testing.B) {
		benchHandshake(b, &Handshaker{}, protocols.Target{Insecure: true}, qemuNone(ProtocolVersion38))
	})
	b.Run("X509None", func(b *testing.B) {
		pki := newTestPKI(b)
		benchHandshake(b, pki.handshaker(), protocols.Target{}, qemuVeNCrypt(pki.server, VeNCryptX509None, ""))
	})
}

// benchHandshake runs, per iteration, a fake QEMU session over loopback:
// Server, Client against a scripted 3.8 viewer, and ServerInit through.
func benchHandshake(b *testing.B, h *Handshaker, target protocols.Target, qemu func(net.Conn) error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { qemu(c); c.Close() }()
		}
	}()
	target.Address = l.Addr().String()
	viewer := viewerScript(ProtocolVersion38, wantInit)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		q, err := net.Dial("tcp", target.Address)
		if err != nil {
			b.Fatal(err)
		}
		s, _, err := h.Server(ctx, q, target)
		if err != nil {
			b.Fatal(err)
		}
		v, p := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- viewer(v) }()
		p, s, err = h.Client(ctx, p, s)
		if err != nil {
			b.Fatal(err)
		}
		go func() { io.Copy(s, p) }()
		go func() { io.Copy(p, s) }()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		v.Close()
		p.Close()
		s.Close()
	}
}
