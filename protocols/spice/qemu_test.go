package spice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

var updateCorpus = flag.Bool("update-corpus", false, "write the bytes real QEMU and the test viewer send to testdata/fuzz")

// Tests against a real QEMU SPICE server (qemutest.StartSPICE) on its TLS
// port, QEMU's certificate verified with tlscreds: the link stage through
// Forward with and without ticketing, the ticket takeover, the main
// channel watcher, and the Registry in front of real channels.

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
	ctx := testContext(t)
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

// recorder keeps every byte read from and written to a conn.
type recorder struct {
	net.Conn
	mu      sync.Mutex
	read    bytes.Buffer
	written bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.read.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.written.Write(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recorder) bytes() (read, written []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.read.Bytes()), bytes.Clone(r.written.Bytes())
}

// proxied is one connection through a proxy running a Handshaker.
type proxied struct {
	viewer net.Conn  // the test viewer's end
	qemu   *recorder // the proxy's conn to QEMU
	err    chan error
	done   chan struct{}
}

// proxy starts one proxied connection: the viewer's end is returned at
// once; the proxy dials QEMU, runs h.Server and h.Client, and pipes bytes
// until either side closes. The handshake's error arrives on err.
func (e *spiceEnv) proxy(t *testing.T, h *Handshaker, target protocols.Target) *proxied {
	t.Helper()
	viewer, proxySide := tcpPair(t)
	p := &proxied{viewer: viewer, qemu: &recorder{Conn: e.dial(t, target.Insecure)},
		err: make(chan error, 1), done: make(chan struct{})}
	ctx := testContext(t)
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
	case <-time.After(testTimeout):
		t.Fatal("the proxy's handshake did not end")
		return nil
	}
}

// registryHandshaker is the wiring Handshaker's doc shows, for token.
func registryHandshaker(r *Registry, token string, singleUse bool, leases chan<- *Lease) *Handshaker {
	var lease *Lease
	return &Handshaker{
		Admit: func(l *Link) (err error) {
			lease, err = r.Admit(token, singleUse, l)
			if err == nil && leases != nil {
				leases <- lease
			}
			return err
		},
		OnMain: func(i MainInfo) { lease.Observe(i) },
	}
}

// mainSession links a main channel through the proxy and reads INIT and,
// after SPICE_MSGC_MAIN_ATTACH_CHANNELS, CHANNELS_LIST, returning the
// viewer and what it read.
func mainSession(t *testing.T, p *proxied, caps []uint32, password string) (*viewerClient, uint32, []ChannelID) {
	t.Helper()
	c := &viewerClient{conn: p.viewer, link: &Link{ChannelType: ChannelMain, CommonCaps: caps}}
	p.viewer.SetDeadline(time.Now().Add(testTimeout))
	if err := c.linkStage(password); err != nil {
		t.Fatalf("viewer: %v", err)
	}
	if c.result != LinkOK {
		t.Fatalf("viewer: link result %v; proxy: %v", c.result, p.handshakeErr(t))
	}
	if err := p.handshakeErr(t); err != nil {
		t.Fatalf("proxy: %v", err)
	}
	init, err := c.waitFor(MsgMainInit)
	if err != nil {
		t.Fatalf("viewer: waiting for SPICE_MSG_MAIN_INIT: %v", err)
	}
	id, err := parseMainInit(init.body)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.writeMessage(MsgcMainAttachChannels, nil); err != nil {
		t.Fatal(err)
	}
	m, err := c.waitFor(MsgMainChannelsList)
	if err != nil {
		t.Fatalf("viewer: waiting for SPICE_MSG_MAIN_CHANNELS_LIST: %v", err)
	}
	list, err := parseChannelsList(m.body)
	if err != nil {
		t.Fatal(err)
	}
	c.beViewer()
	return c, id, list
}

// beViewer keeps a linked channel going as a viewer does, for the rest of
// the test: it sends a display channel's SPICE_MSGC_DISPLAY_INIT and
// answers acks and pings (serve). Seen here with QEMU 7.2
// (libspice-server 0.15.1): a display channel that closes without
// DISPLAY_INIT segfaults QEMU's SPICE worker thread, and one that is
// neither read nor acknowledged can stall QEMU for 15 s; a viewer that
// behaves avoids both.
func (c *viewerClient) beViewer() {
	c.conn.SetDeadline(time.Time{})
	if c.link.ChannelType == ChannelDisplay {
		// SpiceMsgcDisplayInit: u8 pixmap_cache_id, i64 pixmap_cache_size,
		// u8 glz_dictionary_id, i32 glz_dictionary_window_size.
		c.writeMessage(msgcDisplayInit, make([]byte, 14))
	}
	go c.serve()
}

// msgcDisplayInit is SPICE_MSGC_DISPLAY_INIT.
const msgcDisplayInit MsgType = 101

// secondary links channel ch with connection id through the proxy and
// returns the link result the viewer got.
func secondary(t *testing.T, p *proxied, id uint32, ch ChannelID, password string) LinkError {
	t.Helper()
	c := &viewerClient{conn: p.viewer, link: &Link{ConnectionID: id, ChannelType: ch.Type, ChannelID: ch.ID, CommonCaps: viewerCaps}}
	p.viewer.SetDeadline(time.Now().Add(testTimeout))
	if err := c.linkStage(password); err != nil {
		t.Fatalf("viewer: %s: %v; proxy: %v", ch, err, p.handshakeErr(t))
	}
	if c.result == LinkOK {
		c.beViewer()
	}
	return c.result
}

func TestQEMUMainChannelTLS(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps []uint32
	}{
		{"mini-header", viewerCaps},
		{"full-header", capWords(CommonCapAuthSelection, CommonCapAuthSpice)},
		{"no-auth-selection", capWords(CommonCapMiniHeader)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := startSPICE(t, "")
			reg := &Registry{Grace: time.Minute}
			leases := make(chan *Lease, 10)
			p := env.proxy(t, registryHandshaker(reg, "tok", false, leases), env.target(""))
			c, id, list := mainSession(t, p, tc.caps, "")
			if c.mini != (tc.name != "full-header") {
				t.Errorf("mini header %v for caps %x", c.mini, tc.caps)
			}
			if id == 0 {
				t.Error("session id 0")
			}
			for _, want := range []ChannelID{{ChannelDisplay, 0}, {ChannelInputs, 0}} {
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
				read, written := p.qemu.bytes()
				replyLen := linkHeaderLen + int(le.Uint32(read[12:]))
				end := replyLen + linkResultLen
				writeSeed(t, "FuzzReadLink", "qemu-"+tc.name, written[:linkHeaderLen+int(le.Uint32(written[12:]))])
				writeSeed(t, "FuzzLinkReply", "qemu-"+tc.name, read[:end])
				writeSeed(t, "FuzzMainWatcher", "qemu-"+tc.name, shrinkMessages(read[end:], c.mini, 512))
			}

			// Every listed channel links through the proxy.
			for _, ch := range list {
				if ch.Type == ChannelMain {
					continue
				}
				sp := env.proxy(t, registryHandshaker(reg, "tok", false, nil), env.target(""))
				if res := secondary(t, sp, id, ch, ""); res != LinkOK {
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
	hl := fullHeaderLen
	if mini {
		hl = miniHeaderLen
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
	reg := &Registry{Grace: time.Minute}
	p := env.proxy(t, registryHandshaker(reg, "tok", true, nil), env.target(""))
	_, id, _ := mainSession(t, p, viewerCaps, "")

	for _, tc := range []struct {
		name string
		link *Link
		code LinkError
	}{
		{"second main (takeover)", &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}, LinkErrPermissionDenied},
		{"wrong connection id", &Link{ConnectionID: id + 1, ChannelType: ChannelDisplay, CommonCaps: viewerCaps}, LinkErrBadConnectionID},
		{"main as migration target", &Link{ConnectionID: id, ChannelType: ChannelMain, CommonCaps: viewerCaps}, LinkErrBadConnectionID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sp := env.proxy(t, registryHandshaker(reg, "tok", true, nil), env.target(""))
			c := &viewerClient{conn: sp.viewer, link: tc.link}
			sp.viewer.SetDeadline(time.Now().Add(testTimeout))
			if err := c.linkStage(""); err != nil {
				t.Fatalf("viewer: %v", err)
			}
			if c.result != tc.code {
				t.Errorf("viewer got %v, want %v", c.result, tc.code)
			}
			err := sp.handshakeErr(t)
			var rerr *RefusedError
			if !errors.As(err, &rerr) || Code(err) != tc.code {
				t.Errorf("proxy: %v, want a refusal with %v", err, tc.code)
			}
			<-sp.done
			if _, written := sp.qemu.bytes(); len(written) > 0 {
				t.Errorf("a refused link reached QEMU: %q", written)
			}
		})
	}
	if !env.q.Alive() {
		t.Fatalf("QEMU died: %s", env.q.Output())
	}
	// The live session still works: a listed channel links.
	sp := env.proxy(t, registryHandshaker(reg, "tok", true, nil), env.target(""))
	if res := secondary(t, sp, id, ChannelID{ChannelInputs, 0}, ""); res != LinkOK {
		t.Errorf("inputs after refusals: %v", res)
	}
}

func TestQEMUTicketTakeover(t *testing.T) {
	env := startSPICE(t, "s3cret")
	t.Run("viewer sends a wrong ticket", func(t *testing.T) {
		p := env.proxy(t, &Handshaker{}, env.target("s3cret"))
		c, id, _ := mainSession(t, p, viewerCaps, "not-the-password")
		if id == 0 {
			t.Error("session id 0")
		}
		// The viewer saw the proxy's key, not QEMU's.
		read, written := p.qemu.bytes()
		qemuReply, err := ParseLinkReply(read[:linkHeaderLen+int(le.Uint32(read[12:]))])
		if err != nil {
			t.Fatal(err)
		}
		if qemuReply.PubKey == c.reply.PubKey {
			t.Error("the viewer got QEMU's key")
		}
		ours, _ := proxyPubKey()
		if !bytes.Equal(c.reply.PubKey[:], ours) {
			t.Error("the viewer did not get the proxy's key")
		}
		// QEMU got the mechanism and a ticket, not the viewer's.
		linkLen := linkHeaderLen + int(le.Uint32(written[12:]))
		if got := len(written) - linkLen; got < authMechLen+TicketLen {
			t.Fatalf("QEMU got %d bytes after the link message", got)
		}
		if *updateCorpus {
			writeSeed(t, "FuzzLinkReply", "qemu-ticketing", read[:linkHeaderLen+int(le.Uint32(read[12:]))+linkResultLen])
		}
	})
	t.Run("viewer sends no ticket it knows", func(t *testing.T) {
		p := env.proxy(t, &Handshaker{}, env.target("s3cret"))
		c := &viewerClient{conn: p.viewer, link: &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}}
		p.viewer.SetDeadline(time.Now().Add(testTimeout))
		if err := c.linkStage(""); err != nil || c.result != LinkOK {
			t.Fatalf("viewer: %v %v; proxy: %v", c.result, err, p.handshakeErr(t))
		}
	})
	t.Run("wrong password configured", func(t *testing.T) {
		p := env.proxy(t, &Handshaker{}, env.target("wrong"))
		c := &viewerClient{conn: p.viewer, link: &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}}
		p.viewer.SetDeadline(time.Now().Add(testTimeout))
		if err := c.linkStage("s3cret"); err != nil {
			t.Fatalf("viewer: %v", err)
		}
		if c.result != LinkErrPermissionDenied {
			t.Errorf("viewer got %v, want permission denied", c.result)
		}
		err := p.handshakeErr(t)
		var herr *protocols.HandshakeError
		if !errors.As(err, &herr) || Code(err) != LinkErrPermissionDenied {
			t.Errorf("proxy: %v, want QEMU's permission denied", err)
		}
		t.Logf("proxy: %v", err)
		if *updateCorpus {
			read, _ := p.qemu.bytes()
			writeSeed(t, "FuzzLinkReply", "qemu-denied", read)
		}
	})
	t.Run("relayed tickets", func(t *testing.T) {
		// Without a password for the proxy, the viewer's ticket decides.
		for _, tc := range []struct {
			password string
			want     LinkError
		}{{"s3cret", LinkOK}, {"wrong", LinkErrPermissionDenied}} {
			p := env.proxy(t, &Handshaker{}, env.target(""))
			c := &viewerClient{conn: p.viewer, link: &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}}
			p.viewer.SetDeadline(time.Now().Add(testTimeout))
			if err := c.linkStage(tc.password); err != nil {
				t.Fatalf("viewer: %v", err)
			}
			if c.result != tc.want {
				t.Errorf("ticket %q: viewer got %v, want %v", tc.password, c.result, tc.want)
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
	c := &viewerClient{conn: env.dial(t, false), link: &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}}
	defer c.conn.Close()
	c.conn.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.conn.Write(c.link.Marshal()); err != nil {
		t.Fatal(err)
	}
	raw, err := (&peer{ctx: context.Background(), conn: c.conn, name: "QEMU"}).readLinkMessage(linkReplyLen, "reply")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseLinkReply(raw); err != nil {
		t.Fatal(err)
	}
	junk := make([]byte, TicketLen)
	rand.Read(junk)
	c.conn.Write(append(le.AppendUint32(nil, AuthMechSpice), junk...))
	var res [4]byte
	if _, err := c.conn.Read(res[:]); err != nil {
		t.Fatal(err)
	}
	if got := LinkError(le.Uint32(res[:])); got != LinkErrPermissionDenied {
		t.Errorf("undecryptable ticket with disable-ticketing: %v, want permission denied", got)
	}
}

func TestQEMUPlainPort(t *testing.T) {
	env := startSPICE(t, "")
	target := protocols.Target{Kind: protocols.KindSPICE, Address: env.plainAddr, Insecure: true}
	p := env.proxy(t, &Handshaker{OnMain: func(MainInfo) {}}, target)
	_, id, _ := mainSession(t, p, viewerCaps, "")
	if id == 0 {
		t.Error("session id 0")
	}
}
