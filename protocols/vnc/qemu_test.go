package vnc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

var updateCorpus = flag.Bool("update-corpus", false, "write the bytes real QEMU sends (before TLS) to testdata/fuzz/FuzzServerLeg")

// Tests against a real QEMU (qemutest.StartVNC): VeNCrypt x509 with
// client certificates, with and without a VNC password, and plain VNC
// for insecure targets.

// pkiDir mints a CA, a server certificate for 127.0.0.1 and localhost
// and a client certificate into a fresh directory.
func pkiDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := tlscreds.Create(dir, []string{"127.0.0.1", "localhost"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// credsHandshaker returns a Handshaker using the client credentials in dir.
func credsHandshaker(t *testing.T, dir string) *Handshaker {
	t.Helper()
	creds, err := tlscreds.Load(dir, tlscreds.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	return &Handshaker{TLSConfig: func(host string) *tls.Config {
		return creds.ClientConfig(tlscreds.DefaultPolicy(), host)
	}}
}

// preTLS returns the part of a QEMU transcript before the TLS handshake:
// version, security types, VeNCrypt version, ack, sub-types, acceptance.
// A transcript without VeNCrypt is returned whole.
func preTLS(b []byte) []byte {
	if len(b) < 13 {
		return b
	}
	n := int(b[12])
	types := b[13:min(len(b), 13+n)]
	if !bytes.Contains(types, []byte{byte(SecurityVeNCrypt)}) {
		return b
	}
	i := 13 + n + 2 + 1 // version 0.2, ack
	if len(b) <= i {
		return b
	}
	i += 1 + 4*int(b[i]) + 1 // sub-types, acceptance
	return b[:min(len(b), i)]
}

// session runs a proxied session against real QEMU at target.Address with
// a viewer speaking ver, and records what QEMU sent before TLS into the
// fuzz corpus as seed (with -update-corpus).
func session(t *testing.T, h *Handshaker, target protocols.Target, ver, seed string) (protocols.Info, error) {
	t.Helper()
	rec := &nettest.Recorder{Conn: dial(t, target.Address)}
	var recorded []byte
	viewer := viewerScript(ver, wantInit)
	info, err := proxySessionOver(t, rec, &wrapServer{h, func() { recorded = readBytes(rec) }}, target, viewer)
	if recorded == nil {
		recorded = readBytes(rec)
	}
	if *updateCorpus && seed != "" {
		writeSeed(t, "FuzzServerLeg", seed, preTLS(recorded))
	}
	return info, err
}

// wrapServer calls done right after Server returns, before the
// pass-through reads more from QEMU.
type wrapServer struct {
	*Handshaker
	done func()
}

func (w *wrapServer) Server(ctx context.Context, q net.Conn, t protocols.Target) (net.Conn, protocols.Info, error) {
	c, info, err := w.Handshaker.Server(ctx, q, t)
	w.done()
	return c, info, err
}

// writeSeed writes b as a seed of the fuzz target fuzz, in the format of
// go test's corpus files.
func writeSeed(t *testing.T, fuzz, name string, b []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzz)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitTextMode polls with proxied sessions until QEMU's framebuffer is
// in 720x400 text mode: right after start it is 640x480 until the VGA
// BIOS has set the mode.
func waitTextMode(t *testing.T, h *Handshaker, target protocols.Target) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got serverInit
		_, err := proxySession(t, h, target, viewerReading(ProtocolVersion38, &got))
		if err != nil {
			t.Fatalf("probe session: %v", err)
		}
		if got.Width == wantInit.Width && got.Height == wantInit.Height {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU's framebuffer is %dx%d after 30s, want %dx%d", got.Width, got.Height, wantInit.Width, wantInit.Height)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestQEMUX509None(t *testing.T) {
	dir := pkiDir(t)
	q, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	h := credsHandshaker(t, dir)
	waitTextMode(t, h, protocols.Target{Address: addr})
	for i, vv := range viewerVersions {
		t.Run("viewer-"+vv.name, func(t *testing.T) {
			seed := ""
			if i == 0 {
				seed = "qemu-x509none"
			}
			info, err := session(t, h, protocols.Target{Kind: protocols.KindVNC, Address: addr}, vv.ver, seed)
			if err != nil {
				t.Fatalf("%v\nQEMU: %s", err, q.Output())
			}
			if info.Auth != AuthVeNCryptX509None {
				t.Errorf("Auth = %q", info.Auth)
			}
		})
	}
}

func TestQEMUX509VNC(t *testing.T) {
	dir := pkiDir(t)
	q, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true, Password: "s3cret"})
	h := credsHandshaker(t, dir)
	waitTextMode(t, h, protocols.Target{Address: addr, Password: "s3cret"})
	t.Run("right password", func(t *testing.T) {
		info, err := session(t, h, protocols.Target{Address: addr, Password: "s3cret"}, ProtocolVersion38, "qemu-x509vnc")
		if err != nil {
			t.Fatalf("%v\nQEMU: %s", err, q.Output())
		}
		if info.Auth != AuthVeNCryptX509VNC {
			t.Errorf("Auth = %q", info.Auth)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		_, err := session(t, h, protocols.Target{Address: addr, Password: "guess"}, ProtocolVersion38, "")
		var he *protocols.HandshakeError
		if !errors.As(err, &he) || he.Reason == "" {
			t.Fatalf("err = %v, want a HandshakeError with QEMU's reason", err)
		}
		if !strings.Contains(err.Error(), "check the VNC password") {
			t.Errorf("error does not say what to do: %v", err)
		}
		t.Logf("QEMU's reason: %q; error: %v", he.Reason, err)
	})
	t.Run("no password", func(t *testing.T) {
		_, err := session(t, h, protocols.Target{Address: addr}, ProtocolVersion38, "")
		if err == nil || !strings.Contains(err.Error(), "resolver gave none") {
			t.Fatalf("err = %v", err)
		}
	})
}

// QEMU's certificate from another CA fails verification.
func TestQEMUOtherCA(t *testing.T) {
	qemuDir, ourDir := pkiDir(t), pkiDir(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: qemuDir, VerifyPeer: true})
	_, err := session(t, credsHandshaker(t, ourDir), protocols.Target{Address: addr}, ProtocolVersion38, "")
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("err = %v, want a verification error", err)
	}
	t.Log(err)
}

// Without a client certificate, a verify-peer QEMU ends the session.
func TestQEMUNoClientCert(t *testing.T) {
	dir := pkiDir(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	creds, err := tlscreds.LoadCAFile(filepath.Join(dir, tlscreds.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	h := &Handshaker{TLSConfig: func(host string) *tls.Config { return creds.ClientConfig(tlscreds.DefaultPolicy(), host) }}
	_, err = session(t, h, protocols.Target{Address: addr}, ProtocolVersion38, "")
	if err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	t.Log(err)
}

// Plain VNC (no TLS): None and VNC auth for insecure targets; a secure
// target refuses without sending anything past the version.
func TestQEMUInsecure(t *testing.T) {
	t.Run("None", func(t *testing.T) {
		_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{})
		waitTextMode(t, &Handshaker{}, protocols.Target{Address: addr, Insecure: true})
		info, err := session(t, &Handshaker{}, protocols.Target{Address: addr, Insecure: true}, ProtocolVersion33, "qemu-none")
		if err != nil || info.Auth != AuthNone {
			t.Fatalf("info %+v, err %v", info, err)
		}
		_, err = session(t, &Handshaker{}, protocols.Target{Address: addr}, ProtocolVersion38, "")
		if err == nil || !strings.Contains(err.Error(), "offers no TLS") {
			t.Fatalf("secure target over cleartext: err = %v", err)
		}
		t.Log(err)
	})
	t.Run("VNC auth", func(t *testing.T) {
		_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{Password: "pw"})
		waitTextMode(t, &Handshaker{}, protocols.Target{Address: addr, Insecure: true, Password: "pw"})
		info, err := session(t, &Handshaker{}, protocols.Target{Address: addr, Insecure: true, Password: "pw"}, ProtocolVersion37, "qemu-vncauth")
		if err != nil || info.Auth != AuthVNC {
			t.Fatalf("info %+v, err %v", info, err)
		}
		_, err = session(t, &Handshaker{}, protocols.Target{Address: addr, Insecure: true, Password: "nope"}, ProtocolVersion38, "qemu-vncauth-wrong")
		var he *protocols.HandshakeError
		if !errors.As(err, &he) {
			t.Fatalf("err = %v, want a HandshakeError", err)
		}
		t.Logf("QEMU's reason: %q", he.Reason)
	})
}

// A real viewer (vncsnapshot, RealVNC 3.3.7-based) takes a screenshot
// through the proxy of a VeNCrypt QEMU. What it sends during Client is
// recorded into the FuzzClientLeg corpus (with -update-corpus).
func TestQEMURealViewer(t *testing.T) {
	bin := qemutest.Need(t, "vncsnapshot")[0]
	dir := pkiDir(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	h := credsHandshaker(t, dir)
	target := protocols.Target{Kind: protocols.KindVNC, Address: addr}
	waitTextMode(t, h, target)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := testContext(t)
	proxyErr := make(chan error, 1)
	var recorded []byte
	go func() {
		proxyErr <- func() error {
			q, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer q.Close()
			server, _, err := h.Server(ctx, q, target)
			if err != nil {
				return err
			}
			v, err := l.Accept()
			if err != nil {
				return err
			}
			defer v.Close()
			rec := &nettest.Recorder{Conn: v}
			client, server, err := h.Client(ctx, rec, server)
			recorded = readBytes(rec)
			if err != nil {
				return err
			}
			done := make(chan struct{})
			go func() { io.Copy(server, client); server.Close(); close(done) }()
			io.Copy(client, server)
			client.Close()
			<-done
			return nil
		}()
	}()

	_, port, _ := net.SplitHostPort(l.Addr().String())
	shot := filepath.Join(t.TempDir(), "shot.jpg")
	out, err := exec.CommandContext(ctx, bin, "-quiet", "127.0.0.1::"+port, shot).CombinedOutput()
	if err != nil {
		t.Fatalf("vncsnapshot: %v: %s", err, out)
	}
	img, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(img, []byte{0xff, 0xd8}) {
		t.Fatalf("no JPEG from vncsnapshot (%v): %s", err, out)
	}
	if err := <-proxyErr; err != nil {
		t.Fatal(err)
	}
	t.Logf("vncsnapshot sent %q during the handshake; screenshot of %d bytes", recorded, len(img))
	if *updateCorpus {
		writeSeed(t, "FuzzClientLeg", "vncsnapshot", recorded)
	}
}

// readBytes returns what rec read.
func readBytes(rec *nettest.Recorder) []byte {
	read, _ := rec.Bytes()
	return read
}
