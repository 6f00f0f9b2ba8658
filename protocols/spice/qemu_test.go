package spice_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/spice/spicetest"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

var updateCorpus = flag.Bool("update-corpus", false, "write the bytes real QEMU and the test viewer send to testdata/fuzz")

var le = binary.LittleEndian

// Tests against a real QEMU SPICE server (qemutest.StartSPICE) on its TLS
// port, QEMU's certificate verified with tlscreds: the link stage through
// spice.Forward with and without ticketing, the ticket takeover, the main
// channel watcher, and the spice.Registry in front of real channels. The viewer
// is spicetest's scripted one, so these tests live outside the package.

// spiceEnv is a running QEMU with SPICE and the client TLS config for it.
type spiceEnv struct {
	q                  *qemutest.QEMU
	plainAddr, tlsAddr string
	tlsConfig          *tls.Config
}

func startSPICE(t *testing.T, password string) *spiceEnv {
	t.Helper()
	qemutest.Require(t)
	dir := t.TempDir()
	if err := tlscreds.Create(dir, []string{"127.0.0.1", "localhost"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	creds, err := tlscreds.Load(dir, tlscreds.RoleClient)
	if err != nil {
		t.Fatal(err)
	}
	q, plain, tlsAddr := qemutest.StartSPICE(t, qemutest.SPICEOptions{TLSDir: dir, Password: password})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("QEMU alive %v, output: %s", q.Alive(), q.Output())
		}
	})
	return &spiceEnv{q: q, plainAddr: plain, tlsAddr: tlsAddr,
		tlsConfig: creds.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1")}
}

// dial connects to QEMU's TLS port (certificate verified), or its plain
// port when insecure.
func (e *spiceEnv) dial(t *testing.T, insecure bool) net.Conn {
	t.Helper()
	ctx := spice.TestContext(t)
	if insecure {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", e.plainAddr)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	d := &tls.Dialer{Config: e.tlsConfig}
	c, err := d.DialContext(ctx, "tcp", e.tlsAddr)
	if err != nil {
		t.Fatalf("TLS to QEMU's SPICE port: %v", err)
	}
	return c
}

func (e *spiceEnv) target(password string) protocols.Target {
	return protocols.Target{Kind: protocols.KindSPICE, Address: e.tlsAddr, Password: password}
}

// proxied is one connection through a proxy running a spice.Handshaker.
type proxied struct {
	viewer net.Conn          // the test viewer's end
	qemu   *nettest.Recorder // the proxy's conn to QEMU
	err    chan error
	done   chan struct{}
}

// proxy starts one proxied connection: the viewer's end is returned at
// once; the proxy dials QEMU, runs h.Server and h.Client, and pipes bytes
// until either side closes. The handshake's error arrives on err.
func (e *spiceEnv) proxy(t *testing.T, h *spice.Handshaker, target protocols.Target) *proxied {
	t.Helper()
	viewer, proxySide := nettest.TCPPair(t)
	p := &proxied{viewer: viewer, qemu: &nettest.Recorder{Conn: e.dial(t, target.Insecure)},
		err: make(chan error, 1), done: make(chan struct{})}
	ctx := spice.TestContext(t)
	go func() {
		defer close(p.done)
		q, _, err := h.Server(ctx, p.qemu, target)
		if err != nil {
			p.err <- err
			p.qemu.Close()
			proxySide.Close()
			return
		}
		cv, cq, err := h.Client(ctx, proxySide, q)
		p.err <- err
		if err != nil {
			p.qemu.Close()
			proxySide.Close()
			return
		}
		pipe(cv, cq)
	}()
	t.Cleanup(func() { viewer.Close(); <-p.done })
	return p
}

func (p *proxied) handshakeErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.err:
		return err
	case <-time.After(spice.TestTimeout):
		t.Fatal("the proxy's handshake did not end")
		return nil
	}
}

// registryHandshaker is the wiring spice.Handshaker's doc shows, for token.
func registryHandshaker(r *spice.Registry, token string, singleUse bool, leases chan<- *spice.Lease) *spice.Handshaker {
	var lease *spice.Lease
	return &spice.Handshaker{
		Admit: func(l *spice.Link) (err error) {
			lease, err = r.Admit(token, singleUse, l)
			if err == nil && leases != nil {
				leases <- lease
			}
			return err
		},
		OnMain: func(i spice.MainInfo) { lease.Observe(i) },
	}
}

// mainSession opens a main channel through the proxy with the scripted
// viewer (link, SPICE_MSG_MAIN_INIT, SPICE_MSGC_MAIN_ATTACH_CHANNELS,
// SPICE_MSG_MAIN_CHANNELS_LIST, then upkeep) and checks that the proxy's
// handshake succeeded.
func mainSession(t *testing.T, p *proxied, caps []uint32, password string) *spicetest.Client {
	t.Helper()
	c, err := spicetest.Link(spice.TestContext(t), p.viewer, spicetest.LinkOptions{CommonCaps: caps, Ticket: password})
	if err != nil {
		t.Fatalf("viewer: %v", err)
	}
	if c.Result != spice.LinkOK {
		t.Fatalf("viewer: link result %v; proxy: %v", c.Result, p.handshakeErr(t))
	}
	if err := p.handshakeErr(t); err != nil {
		t.Fatalf("proxy: %v", err)
	}
	if err := c.ReadMain(spice.TestContext(t)); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	c.Serve()
	return c
}

// secondary links channel ch with connection id through the proxy and
// returns the link result the viewer got; a linked channel is kept going.
func secondary(t *testing.T, p *proxied, id uint32, ch spice.ChannelID, password string) spice.LinkError {
	t.Helper()
	c, err := spicetest.Link(spice.TestContext(t), p.viewer, spicetest.LinkOptions{ConnectionID: id, Channel: ch, Ticket: password})
	if err != nil {
		t.Fatalf("viewer: %s: %v; proxy: %v", ch, err, p.handshakeErr(t))
	}
	if c.Result == spice.LinkOK {
		c.Serve()
	}
	return c.Result
}

// linkLen is the length of the link header and message or reply at the
// start of b.
func linkLen(b []byte) int { return spicetest.LinkHeaderLen + int(le.Uint32(b[12:])) }

func TestQEMUMainChannelTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []uint32
	}{
		{"mini-header", spicetest.ViewerCaps},
		{"full-header", spicetest.Caps(spice.CommonCapAuthSelection, spice.CommonCapAuthSpice)},
		{"no-auth-selection", spicetest.Caps(spice.CommonCapMiniHeader)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startSPICE(t, "")
			reg := &spice.Registry{Grace: time.Minute}
			leases := make(chan *spice.Lease, 10)
			p := env.proxy(t, registryHandshaker(reg, "tok", false, leases), env.target(""))
			c := mainSession(t, p, tc.caps, "")
			id, list := c.SessionID, c.Channels
			if c.MiniHeader != (tc.name != "full-header") {
				t.Errorf("mini header %v for caps %x", c.MiniHeader, tc.caps)
			}
			if id == 0 {
				t.Error("session id 0")
			}
			for _, want := range []spice.ChannelID{{spice.ChannelDisplay, 0}, {spice.ChannelInputs, 0}} {
				if !slices.Contains(list, want) {
					t.Errorf("channel list %v lacks %s", list, want)
				}
			}
			t.Logf("session %d, channels %v", id, list)
			// The watcher reported to the registry before the viewer
			// could read the messages.
			info := (<-leases).Info()
			if !info.HasSessionID || info.SessionID != id || !info.HasChannels || !slices.Equal(info.Channels, list) {
				t.Errorf("registry learnt %+v; viewer read session %d, channels %v", info, id, list)
			}
			if *updateCorpus {
				read, written := p.qemu.Bytes()
				end := linkLen(read) + spice.LinkResultLen
				writeSeed(t, "FuzzReadLink", "qemu-"+tc.name, written[:linkLen(written)])
				writeSeed(t, "FuzzLinkReply", "qemu-"+tc.name, read[:end])
				writeSeed(t, "FuzzMainWatcher", "qemu-"+tc.name, shrinkMessages(read[end:], c.MiniHeader, 512))
			}

			// Every listed channel links through the proxy.
			for _, ch := range list {
				if ch.Type == spice.ChannelMain {
					continue
				}
				sp := env.proxy(t, registryHandshaker(reg, "tok", false, nil), env.target(""))
				if res := secondary(t, sp, id, ch, ""); res != spice.LinkOK {
					t.Errorf("%s: link result %v; proxy: %v", ch, res, sp.handshakeErr(t))
				} else if err := sp.handshakeErr(t); err != nil {
					t.Errorf("%s: proxy: %v", ch, err)
				}
			}
		})
	}
}

// shrinkMessages cuts the bodies of messages over limit bytes (the
// network test's 250 KiB pings) to limit, fixing their size fields, so
// that a recorded stream makes a small seed.
func shrinkMessages(b []byte, mini bool, limit uint32) []byte {
	hl := spicetest.FullHeaderLen
	if mini {
		hl = spicetest.MiniHeaderLen
	}
	var out []byte
	for len(b) >= hl {
		h := b[:hl]
		sh := h
		if !mini {
			sh = h[8:]
		}
		size := le.Uint32(sh[2:])
		if uint64(len(b)-hl) < uint64(size) {
			break
		}
		body := b[hl : hl+int(size)]
		b = b[hl+int(size):]
		h = bytes.Clone(h)
		if size > limit {
			body = body[:limit]
			sh = h
			if !mini {
				sh = h[8:]
			}
			le.PutUint32(sh[2:], limit)
		}
		out = append(append(out, h...), body...)
	}
	return out
}

func TestQEMURegistryRefusals(t *testing.T) {
	env := startSPICE(t, "")
	reg := &spice.Registry{Grace: time.Minute}
	p := env.proxy(t, registryHandshaker(reg, "tok", true, nil), env.target(""))
	id := mainSession(t, p, spicetest.ViewerCaps, "").SessionID

	for _, tc := range []struct {
		name string
		link spicetest.LinkOptions
		code spice.LinkError
	}{
		{"second main (takeover)", spicetest.LinkOptions{}, spice.LinkErrPermissionDenied},
		{"wrong connection id", spicetest.LinkOptions{ConnectionID: id + 1, Channel: spice.ChannelID{Type: spice.ChannelDisplay}}, spice.LinkErrBadConnectionID},
		{"main as migration target", spicetest.LinkOptions{ConnectionID: id}, spice.LinkErrBadConnectionID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := env.proxy(t, registryHandshaker(reg, "tok", true, nil), env.target(""))
			c, err := spicetest.Link(spice.TestContext(t), sp.viewer, tc.link)
			if err != nil {
				t.Fatalf("viewer: %v", err)
			}
			if c.Result != tc.code {
				t.Errorf("viewer got %v, want %v", c.Result, tc.code)
			}
			err = sp.handshakeErr(t)
			var rerr *spice.RefusedError
			if !errors.As(err, &rerr) || spice.Code(err) != tc.code {
				t.Errorf("proxy: %v, want a refusal with %v", err, tc.code)
			}
			<-sp.done
			if _, written := sp.qemu.Bytes(); len(written) > 0 {
				t.Errorf("a refused link reached QEMU: %q", written)
			}
		})
	}
	if !env.q.Alive() {
		t.Fatalf("QEMU died: %s", env.q.Output())
	}
	// The live session still works: a listed channel links.
	sp := env.proxy(t, registryHandshaker(reg, "tok", true, nil), env.target(""))
	if res := secondary(t, sp, id, spice.ChannelID{spice.ChannelInputs, 0}, ""); res != spice.LinkOK {
		t.Errorf("inputs after refusals: %v", res)
	}
}

func TestQEMUTicketTakeover(t *testing.T) {
	env := startSPICE(t, "s3cret")
	mainLink := func(t *testing.T, p *proxied, ticket string) *spicetest.Client {
		t.Helper()
		c, err := spicetest.Link(spice.TestContext(t), p.viewer, spicetest.LinkOptions{Ticket: ticket})
		if err != nil {
			t.Fatalf("viewer: %v; proxy: %v", err, p.handshakeErr(t))
		}
		return c
	}
	t.Run("viewer sends a wrong ticket", func(t *testing.T) {
		p := env.proxy(t, &spice.Handshaker{}, env.target("s3cret"))
		c := mainSession(t, p, spicetest.ViewerCaps, "not-the-password")
		if c.SessionID == 0 {
			t.Error("session id 0")
		}
		// The viewer saw the proxy's key, not QEMU's.
		read, written := p.qemu.Bytes()
		qemuReply, err := spice.ParseLinkReply(read[:linkLen(read)])
		if err != nil {
			t.Fatal(err)
		}
		if qemuReply.PubKey == c.Reply.PubKey {
			t.Error("the viewer got QEMU's key")
		}
		ours, _ := spice.ProxyPubKey()
		if !bytes.Equal(c.Reply.PubKey[:], ours) {
			t.Error("the viewer did not get the proxy's key")
		}
		// QEMU got the mechanism and a ticket, not the viewer's.
		if got := len(written) - linkLen(written); got < spice.AuthMechLen+spice.TicketLen {
			t.Fatalf("QEMU got %d bytes after the link message", got)
		}
		if *updateCorpus {
			writeSeed(t, "FuzzLinkReply", "qemu-ticketing", read[:linkLen(read)+spice.LinkResultLen])
		}
	})
	t.Run("viewer sends no ticket it knows", func(t *testing.T) {
		p := env.proxy(t, &spice.Handshaker{}, env.target("s3cret"))
		if c := mainLink(t, p, ""); c.Result != spice.LinkOK {
			t.Fatalf("viewer: %v; proxy: %v", c.Result, p.handshakeErr(t))
		}
	})
	t.Run("wrong password configured", func(t *testing.T) {
		p := env.proxy(t, &spice.Handshaker{}, env.target("wrong"))
		if c := mainLink(t, p, "s3cret"); c.Result != spice.LinkErrPermissionDenied {
			t.Errorf("viewer got %v, want permission denied", c.Result)
		}
		err := p.handshakeErr(t)
		var herr *protocols.HandshakeError
		if !errors.As(err, &herr) || spice.Code(err) != spice.LinkErrPermissionDenied {
			t.Errorf("proxy: %v, want QEMU's permission denied", err)
		}
		t.Logf("proxy: %v", err)
		if *updateCorpus {
			read, _ := p.qemu.Bytes()
			writeSeed(t, "FuzzLinkReply", "qemu-denied", read)
		}
	})
	t.Run("relayed tickets", func(t *testing.T) {
		// Without a password for the proxy, the viewer's ticket decides.
		for _, tc := range []struct {
			password string
			want     spice.LinkError
		}{{"s3cret", spice.LinkOK}, {"wrong", spice.LinkErrPermissionDenied}} {
			p := env.proxy(t, &spice.Handshaker{}, env.target(""))
			if c := mainLink(t, p, tc.password); c.Result != tc.want {
				t.Errorf("ticket %q: viewer got %v, want %v", tc.password, c.Result, tc.want)
			}
		}
	})
	if !env.q.Alive() {
		t.Fatalf("QEMU died: %s", env.q.Output())
	}
}

// TestQEMUUndecryptableTicket checks a wire fact: even with
// disable-ticketing, spice-server decrypts the ticket and refuses the
// link when it cannot (reds_handle_ticket), so the proxy must relay a
// real ticket, not make one up.
func TestQEMUUndecryptableTicket(t *testing.T) {
	env := startSPICE(t, "")
	conn := env.dial(t, false)
	defer conn.Close()
	junk := make([]byte, spice.TicketLen)
	rand.Read(junk)
	c, err := spicetest.Link(spice.TestContext(t), conn, spicetest.LinkOptions{RawTicket: junk})
	if err != nil {
		t.Fatal(err)
	}
	if c.Result != spice.LinkErrPermissionDenied {
		t.Errorf("undecryptable ticket with disable-ticketing: %v, want permission denied", c.Result)
	}
}

func TestQEMUPlainPort(t *testing.T) {
	env := startSPICE(t, "")
	target := protocols.Target{Kind: protocols.KindSPICE, Address: env.plainAddr, Insecure: true}
	p := env.proxy(t, &spice.Handshaker{OnMain: func(spice.MainInfo) {}}, target)
	if c := mainSession(t, p, spicetest.ViewerCaps, ""); c.SessionID == 0 {
		t.Error("session id 0")
	}
}

// TestForwardTCP runs the relay over real sockets with a fake QEMU that
// checks the ticket with its own key, as spice-server does.
func TestForwardTCP(t *testing.T) {
	key := spice.TestKey()
	for _, tc := range []struct {
		proxyPassword, viewerPassword string
		want                          spice.LinkError
	}{
		{"", "pw", spice.LinkOK},
		{"", "nope", spice.LinkErrPermissionDenied},
		{"pw", "anything", spice.LinkOK},
		{"wrong", "pw", spice.LinkErrPermissionDenied},
	} {
		viewer, proxyV := nettest.TCPPair(t)
		proxyQ, qemu := nettest.TCPPair(t)
		go func() {
			// fake QEMU with password "pw"
			ctx := spice.TestContext(t)
			l, _, err := spice.ReadLink(ctx, qemu)
			if err != nil {
				return
			}
			qemu.SetDeadline(time.Now().Add(spice.TestTimeout))
			qemu.Write(spice.OKReply(t, key, spice.QEMUReplyCaps))
			if l.HasCommonCap(spice.CommonCapAuthSelection) {
				var mech [spice.AuthMechLen]byte
				if _, err := io.ReadFull(qemu, mech[:]); err != nil {
					return
				}
			}
			ticket := make([]byte, spice.TicketLen)
			if _, err := io.ReadFull(qemu, ticket); err != nil {
				return
			}
			res := spice.LinkErrPermissionDenied
			if pt, err := rsa.DecryptOAEP(sha1.New(), nil, key, ticket, nil); err == nil && string(pt) == "pw\x00" {
				res = spice.LinkOK
			}
			qemu.Write(le.AppendUint32(nil, uint32(res)))
		}()
		done := make(chan error, 1)
		go func() {
			l, raw, err := spice.ReadLink(spice.TestContext(t), proxyV)
			if err == nil {
				_, err = spice.Forward(spice.TestContext(t), proxyV, proxyQ, l, raw, tc.proxyPassword)
			}
			done <- err
		}()
		c, err := spicetest.Link(spice.TestContext(t), viewer, spicetest.LinkOptions{Ticket: tc.viewerPassword})
		if err != nil {
			t.Fatal(err)
		}
		if c.Result != tc.want {
			t.Errorf("%+v: viewer got %v", tc, c.Result)
		}
		if err := <-done; spice.Code(err) != tc.want {
			t.Errorf("%+v: spice.Forward: %v", tc, err)
		}
	}
}

// pipe copies a to b and b to a until either ends, then closes both; it
// returns when both copies are done.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
		a.Close()
		b.Close()
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// writeSeed writes a fuzz corpus file for target in the go test fuzz v1
// format.
func writeSeed(t testing.TB, target, name string, data ...[]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, d := range data {
		fmt.Fprintf(&b, "[]byte(%q)\n", d)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
