package spice

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha1"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"

	"github.com/virtconsole/virtconsole/protocols"
)

func TestReadLinkExact(t *testing.T) {
	l := &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}
	after := []byte("next bytes belong to the pass-through")
	c := newMemConn(append(l.Marshal(), after...))
	got, raw, err := ReadLink(testContext(t), c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, l.Marshal()) || got.ChannelType != ChannelMain {
		t.Errorf("%+v %q", got, raw)
	}
	rest, _ := io.ReadAll(c.r)
	if !bytes.Equal(rest, after) {
		t.Errorf("ReadLink read past the link message: %q left", rest)
	}
	if c.w.Len() != 0 {
		t.Errorf("ReadLink wrote %q", c.w.Bytes())
	}
}

func TestReadLinkErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		code LinkError
		msg  string
	}{
		{"empty", nil, LinkErrError, "the viewer closed the connection while reading its link message header"},
		{"truncated", (&Link{ChannelType: ChannelMain}).Marshal()[:20], LinkErrError, "closed the connection while reading its link message"},
		{"http", []byte("GET /websockify HTTP/1.1\r\n"), LinkErrInvalidMagic, `the viewer does not speak SPICE (it sent "GET "`},
		{"huge", linkBytes(Magic, 2, 1<<30, nil), LinkErrInvalidData, "1073741824 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemConn(tc.in)
			_, _, err := ReadLink(testContext(t), c)
			if err == nil || Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%v (code %v), want code %v, %q", err, Code(err), tc.code, tc.msg)
			}
			if c.maxRead > MaxLinkSize {
				t.Errorf("a read of %d bytes", c.maxRead)
			}
		})
	}
}

func TestReadLinkDeadline(t *testing.T) {
	viewer, _ := nettest.TCPPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := ReadLink(ctx, viewer)
	if err == nil || !strings.Contains(err.Error(), "did not finish the link stage in time") {
		t.Fatalf("%v", err)
	}
	// The deadline is cleared afterwards.
	viewer.SetReadDeadline(time.Time{})
}

func TestRefuse(t *testing.T) {
	c := newMemConn(nil)
	if err := Refuse(testContext(t), c, LinkErrBadConnectionID); err != nil {
		t.Fatal(err)
	}
	r, err := ParseLinkReply(c.w.Bytes())
	if err != nil || r.Error != LinkErrBadConnectionID || r.PubKey != [PubKeyLen]byte{} {
		t.Fatalf("%+v %v", r, err)
	}
	c = newMemConn(nil)
	Refuse(testContext(t), c, LinkOK) // never "ok"
	if r, _ := ParseLinkReply(c.w.Bytes()); r.Error != LinkErrError {
		t.Errorf("Refuse(LinkOK) sent %v", r.Error)
	}
}

// viewerTicket is what a viewer sends after the reply: the auth mechanism
// and a ticket (here: recognisable junk).
func viewerTicket(mech bool) []byte {
	var b []byte
	if mech {
		b = le.AppendUint32(b, AuthMechSpice)
	}
	return append(b, bytes.Repeat([]byte{0xee}, TicketLen)...)
}

// forwardCase runs Forward with scripted peers: the viewer sent link and
// then viewerIn; QEMU answers qemuIn.
type forwardCase struct {
	name     string
	link     *Link
	password string
	viewerIn []byte
	qemuIn   []byte
	// checks
	code       LinkError // LinkOK: success
	msg        string    // part of the error
	viewerOut  []byte    // what the viewer must get, if non-nil
	qemuTicket []byte    // what QEMU must get after the link, if non-nil
	mini       bool
}

func TestForward(t *testing.T) {
	key := testKey()
	mainLink := &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}
	reply := okReply(t, key, qemuReplyCaps)
	okResult := le.AppendUint32(nil, uint32(LinkOK))
	denied := le.AppendUint32(nil, uint32(LinkErrPermissionDenied))
	linkErrResult := le.AppendUint32(nil, uint32(LinkErrError))
	refusal := errorReply(LinkErrError)

	for _, tc := range []forwardCase{
		{
			name: "relay", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: cat(reply, okResult),
			viewerOut: cat(reply, okResult), qemuTicket: viewerTicket(true), mini: true,
		},
		{
			name: "relay, viewer without mini header", link: &Link{ChannelType: ChannelMain, CommonCaps: capWords(CommonCapAuthSelection)},
			viewerIn: viewerTicket(true), qemuIn: cat(reply, okResult),
			viewerOut: cat(reply, okResult), qemuTicket: viewerTicket(true),
		},
		{
			name: "relay, server without mini header", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: cat(okReply(t, key, capWords(CommonCapAuthSelection, CommonCapAuthSpice)), okResult),
			qemuTicket: viewerTicket(true),
		},
		{
			// The viewer sends a mechanism because the reply offers
			// selection; QEMU reads none because the link did not.
			name: "link without auth selection", link: &Link{ChannelType: ChannelMain},
			viewerIn: viewerTicket(true), qemuIn: cat(reply, okResult),
			viewerOut: cat(reply, okResult), qemuTicket: viewerTicket(false),
		},
		{
			// An old server: no selection offered, the viewer sends the
			// ticket alone; QEMU's rule follows the link message.
			name: "reply without auth selection", link: mainLink,
			viewerIn: viewerTicket(false), qemuIn: cat(okReply(t, key, capWords(CommonCapMiniHeader)), okResult),
			qemuTicket: viewerTicket(true), mini: true,
		},
		{
			name: "QEMU refuses the link message", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: errorReply(LinkErrNeedSecured),
			code: LinkErrNeedSecured, msg: "spice: QEMU refused the main channel's link message: the channel needs TLS; QEMU wants this channel on its TLS port",
			viewerOut: errorReply(LinkErrNeedSecured),
		},
		{
			name: "QEMU refuses the ticket", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: cat(reply, denied),
			code: LinkErrPermissionDenied, msg: "QEMU wants a SPICE password",
			viewerOut: cat(reply, denied),
		},
		{
			name: "QEMU refuses the proxy's ticket", link: mainLink, password: "pw",
			viewerIn: viewerTicket(true), qemuIn: cat(reply, denied),
			code: LinkErrPermissionDenied, msg: "check the SPICE password the resolver gives",
		},
		{
			name: "bad connection id", link: &Link{ConnectionID: 5, ChannelType: ChannelDisplay, CommonCaps: viewerCaps},
			viewerIn: viewerTicket(true), qemuIn: cat(reply, le.AppendUint32(nil, uint32(LinkErrBadConnectionID))),
			code: LinkErrBadConnectionID, msg: "QEMU refused the display channel's link: bad connection id",
		},
		{
			name: "QEMU requires SASL", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: cat(okReply(t, key, capWords(CommonCapAuthSelection, CommonCapAuthSASL)), okResult),
			code: LinkErrError, msg: "QEMU requires SASL", viewerOut: refusal,
		},
		{
			name: "viewer chooses SASL", link: mainLink,
			viewerIn: cat(le.AppendUint32(nil, AuthMechSASL), viewerTicket(false)), qemuIn: cat(reply, okResult),
			code: LinkErrInvalidData, msg: "the viewer chose SASL", viewerOut: cat(reply, linkErrResult),
		},
		{
			name: "viewer chooses nonsense", link: mainLink,
			viewerIn: cat(le.AppendUint32(nil, 77), viewerTicket(false)), qemuIn: cat(reply, okResult),
			code: LinkErrInvalidData, msg: "auth mechanism 77",
		},
		{
			name: "not a SPICE server", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: []byte("RFB 003.008\n\x01\x02\x00\x00"),
			code: LinkErrInvalidMagic, msg: "spice: QEMU does not speak SPICE", viewerOut: refusal,
		},
		{
			name: "QEMU closes before the result", link: mainLink,
			viewerIn: viewerTicket(true), qemuIn: reply,
			code: LinkErrError, msg: "QEMU closed the connection while reading its link result", viewerOut: cat(reply, linkErrResult),
		},
		{
			name: "viewer closes before the ticket", link: mainLink,
			viewerIn: viewerTicket(true)[:50], qemuIn: cat(reply, okResult),
			code: LinkErrError, msg: "the viewer closed the connection while reading its encrypted ticket",
		},
		{
			name: "password too long", link: mainLink, password: strings.Repeat("x", 61),
			viewerIn: viewerTicket(true), qemuIn: cat(reply, okResult),
			code: LinkErrError, msg: "61 bytes; SPICE passwords are at most 60", viewerOut: refusal,
		},
		{
			name: "takeover with a keyless reply", link: mainLink, password: "pw",
			viewerIn: viewerTicket(true), qemuIn: cat((&LinkReply{CommonCaps: qemuReplyCaps}).Marshal(), okResult),
			code: LinkErrError, msg: "no usable public key", viewerOut: refusal,
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runForward(t, tc, key) })
	}
}

func cat(b ...[]byte) []byte { return bytes.Join(b, nil) }

func runForward(t *testing.T, tc forwardCase, key *rsa.PrivateKey) {
	t.Helper()
	raw := tc.link.Marshal()
	v, q := newMemConn(tc.viewerIn), newMemConn(tc.qemuIn)
	info, err := Forward(testContext(t), v, q, tc.link, raw, tc.password)
	if tc.code == LinkOK {
		if err != nil {
			t.Fatalf("Forward: %v", err)
		}
		if info.MiniHeader != tc.mini || info.Takeover != (tc.password != "") || info.Reply == nil {
			t.Errorf("info %+v", info)
		}
	} else {
		if err == nil || Code(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
			t.Fatalf("Forward: %v (code %v), want code %v and %q", err, Code(err), tc.code, tc.msg)
		}
		if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "spice: ") {
			t.Errorf("error not one line starting spice: %q", err)
		}
		var herr *protocols.HandshakeError
		if fromQEMU := tc.code != LinkErrError && tc.code != LinkErrInvalidData && tc.code != LinkErrInvalidMagic; fromQEMU != errors.As(err, &herr) {
			t.Errorf("HandshakeError %v for %v", herr, err)
		}
	}
	if tc.viewerOut != nil && !bytes.Equal(v.w.Bytes(), tc.viewerOut) {
		t.Errorf("viewer got %d bytes %x…, want %d bytes", v.w.Len(), head(v.w.Bytes()), len(tc.viewerOut))
	}
	sent := q.w.Bytes()
	if tc.password != "" && len(tc.password) > MaxPasswordLen {
		if len(sent) != 0 {
			t.Errorf("QEMU got %q before the password was checked", sent)
		}
		return
	}
	if !bytes.HasPrefix(sent, raw) {
		t.Fatalf("QEMU got %x…, not the link message", head(sent))
	}
	if tc.qemuTicket != nil && !bytes.Equal(sent[len(raw):], tc.qemuTicket) {
		t.Errorf("QEMU got %x… after the link, want %x…", head(sent[len(raw):]), head(tc.qemuTicket))
	}
	if v.maxRead > TicketLen || q.maxRead > MaxLinkSize {
		t.Errorf("reads of %d (viewer) and %d (QEMU) bytes", v.maxRead, q.maxRead)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }

func TestForwardTakeover(t *testing.T) {
	key := testKey()
	link := &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}
	reply := okReply(t, key, qemuReplyCaps)
	v := newMemConn(viewerTicket(true))
	q := newMemConn(cat(reply, le.AppendUint32(nil, 0)))
	info, err := Forward(testContext(t), v, q, link, link.Marshal(), "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !info.Takeover {
		t.Error("no takeover")
	}
	// The viewer got QEMU's reply with the proxy's key instead of QEMU's.
	got := v.w.Bytes()
	ours, _ := proxyPubKey()
	want := bytes.Clone(reply)
	copy(want[linkHeaderLen+4:], ours)
	if !bytes.Equal(got[:len(reply)], want) {
		t.Error("the viewer's reply is not QEMU's with the proxy's key")
	}
	if !bytes.Equal(got[len(reply):], le.AppendUint32(nil, 0)) {
		t.Errorf("link result %x", got[len(reply):])
	}
	// QEMU got the mechanism and the password encrypted with its key.
	sent := q.w.Bytes()[len(link.Marshal()):]
	if le.Uint32(sent) != AuthMechSpice || len(sent) != authMechLen+TicketLen {
		t.Fatalf("QEMU got %x", sent)
	}
	pt, err := rsa.DecryptOAEP(sha1.New(), nil, key, sent[authMechLen:], nil)
	if err != nil || string(pt) != "s3cret\x00" {
		t.Errorf("ticket decrypts to %q, %v", pt, err)
	}
}

func TestForwardDeadline(t *testing.T) {
	viewer, _ := nettest.TCPPair(t)
	qemu, _ := nettest.TCPPair(t) // a QEMU that never answers
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	link := &Link{ChannelType: ChannelMain}
	_, err := Forward(ctx, viewer, qemu, link, link.Marshal(), "")
	if err == nil || !strings.Contains(err.Error(), "QEMU did not finish the link stage in time (stuck reading its link reply header)") {
		t.Fatalf("%v", err)
	}
}

func TestHandshaker(t *testing.T) {
	key := testKey()
	reply := okReply(t, key, qemuReplyCaps)
	okResult := le.AppendUint32(nil, 0)
	initMsg := AppendMessage(nil, true, 0, MsgMainInit, le.AppendUint32(make([]byte, 0, 32), 42))

	t.Run("password too long", func(t *testing.T) {
		h := &Handshaker{}
		_, _, err := h.Server(testContext(t), newMemConn(nil), protocols.Target{Kind: protocols.KindSPICE, Password: strings.Repeat("p", 100)})
		if err == nil || !strings.Contains(err.Error(), "at most 60") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("admitted main channel", func(t *testing.T) {
		var got []MainInfo
		var admitted *Link
		h := &Handshaker{
			Admit:  func(l *Link) error { admitted = l; return nil },
			OnMain: func(i MainInfo) { got = append(got, i) },
		}
		q, info, err := h.Server(testContext(t), newMemConn(cat(reply, okResult, initMsg)), protocols.Target{Kind: protocols.KindSPICE, Password: "pw"})
		if err != nil || info.Auth != AuthTicketTakeover {
			t.Fatalf("%+v %v", info, err)
		}
		link := &Link{ChannelType: ChannelMain, CommonCaps: viewerCaps}
		v := newMemConn(cat(link.Marshal(), viewerTicket(true)))
		cv, cq, err := h.Client(testContext(t), v, q)
		if err != nil {
			t.Fatal(err)
		}
		if cv != v || admitted == nil || admitted.ChannelType != ChannelMain {
			t.Errorf("conns or admission wrong: %v", admitted)
		}
		b, _ := io.ReadAll(cq)
		if !bytes.Equal(b, initMsg) || len(got) != 1 || got[0].SessionID != 42 {
			t.Errorf("watcher: %q %+v", b, got)
		}
	})
	t.Run("refused by Admit", func(t *testing.T) {
		h := &Handshaker{Admit: func(l *Link) error {
			return &RefusedError{Code: LinkErrBadConnectionID, Session: "x", Channel: l.Channel(), Reason: "test"}
		}}
		q := newMemConn(nil)
		h.Server(testContext(t), q, protocols.Target{Kind: protocols.KindSPICE})
		link := &Link{ConnectionID: 9, ChannelType: ChannelDisplay}
		v := newMemConn(link.Marshal())
		_, _, err := h.Client(testContext(t), v, q)
		if Code(err) != LinkErrBadConnectionID {
			t.Fatalf("%v", err)
		}
		if r, _ := ParseLinkReply(v.w.Bytes()); r == nil || r.Error != LinkErrBadConnectionID {
			t.Errorf("viewer got %x", v.w.Bytes())
		}
		if q.w.Len() != 0 {
			t.Errorf("QEMU got %q", q.w.Bytes())
		}
	})
	t.Run("malformed link", func(t *testing.T) {
		h := &Handshaker{}
		q := newMemConn(nil)
		h.Server(testContext(t), q, protocols.Target{Kind: protocols.KindSPICE})
		v := newMemConn(linkBytes(Magic, 3, 18, make([]byte, 18)))
		_, _, err := h.Client(testContext(t), v, q)
		if Code(err) != LinkErrVersionMismatch {
			t.Fatalf("%v", err)
		}
		if r, _ := ParseLinkReply(v.w.Bytes()); r == nil || r.Error != LinkErrVersionMismatch {
			t.Errorf("viewer got %x", v.w.Bytes())
		}
	})
	t.Run("secondary channel is not watched", func(t *testing.T) {
		h := &Handshaker{OnMain: func(MainInfo) { t.Error("OnMain on a display channel") }}
		q := newMemConn(cat(reply, okResult, initMsg))
		h.Server(testContext(t), q, protocols.Target{Kind: protocols.KindSPICE})
		link := &Link{ConnectionID: 42, ChannelType: ChannelDisplay, CommonCaps: viewerCaps}
		_, cq, err := h.Client(testContext(t), newMemConn(cat(link.Marshal(), viewerTicket(true))), q)
		if err != nil || cq != q {
			t.Fatalf("%v %T", err, cq)
		}
	})
}

func TestReadLinkCancel(t *testing.T) {
	viewer, _ := nettest.TCPPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, _, err := ReadLink(ctx, viewer)
	if err == nil || !strings.Contains(err.Error(), "spice: link stage with the viewer stopped while reading its link message header") {
		t.Fatalf("%v", err)
	}
}
