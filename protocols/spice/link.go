package spice

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"fmt"
	"net"
	"sync"

	"github.com/virtconsole/virtconsole/protocols"
)

// ReadLink reads the viewer's link header and message, so that the proxy
// can decide on the connection before anything reaches QEMU. It returns
// the parsed message and the exact bytes read (to send QEMU unchanged).
// Nothing is read beyond the message, and nothing is written: on error
// the caller may answer the viewer with Refuse(ctx, viewer, Code(err)).
// The read honours ctx's deadline.
func ReadLink(ctx context.Context, viewer net.Conn) (*Link, []byte, error) {
	defer protocols.Deadline(ctx, viewer)()
	p := newPeer(ctx, viewer, "the viewer")
	raw, err := p.readLinkMessage(linkMessLen, "its link message")
	if err != nil {
		return nil, nil, err
	}
	l, err := parseLink(raw, p.Name)
	if err != nil {
		return nil, nil, err
	}
	return l, raw, nil
}

// Refuse answers a viewer whose link message was read (or could not be
// read) with the link reply spice-server sends to refuse a link: the
// header and a reply carrying only code (reds_send_link_error). Viewers
// show the code (remote-viewer: "permission denied", "bad connection
// id"…). The caller closes viewer afterwards.
func Refuse(ctx context.Context, viewer net.Conn, code LinkError) error {
	defer protocols.Deadline(ctx, viewer)()
	if code == LinkOK {
		code = LinkErrError
	}
	p := newPeer(ctx, viewer, "the viewer")
	return p.Write(errorReply(code), "the link refusal")
}

// Info is what Forward learnt about a link.
type Info struct {
	// Reply is QEMU's link reply (with QEMU's own key, even when the
	// viewer was sent the proxy's).
	Reply *LinkReply
	// MiniHeader reports that both sides set SPICE_COMMON_CAP_MINI_HEADER,
	// so that messages after the link have the 6-byte SpiceMiniDataHeader
	// rather than the 18-byte SpiceDataHeader (spice-server decides from
	// the client's caps, clients from the server's).
	MiniHeader bool
	// Takeover reports that the proxy answered the ticket step with the
	// password it was given.
	Takeover bool
}

// Forward runs the rest of the link stage once the proxy has accepted the
// viewer's link message (link, and raw as ReadLink returned them): it
// sends raw to QEMU, relays QEMU's link reply to the viewer, the viewer's
// auth mechanism and encrypted ticket to QEMU, and QEMU's link result to
// the viewer. It returns when the link stage is over on both legs: what
// follows on either conn is the channel's messages, for pass-through.
//
// With a password, the proxy takes over the ticket step: the viewer gets
// the reply with the proxy's own RSA-1024 key instead of QEMU's, its
// ticket (encrypted with that key) is read and discarded, and QEMU gets
// password encrypted with QEMU's key (RSA-OAEP with SHA-1, the password
// and a NUL, as spice-gtk sends it). The viewer thus needs no password.
// Without one, the viewer's ticket goes to QEMU unchanged.
//
// QEMU's refusals (an error reply, a failed link result such as
// permission denied for a wrong password) reach the viewer as QEMU sent
// them, and the error wraps a *protocols.HandshakeError with QEMU's code
// (see Code). Only the SPICE ticket mechanism is supported: a QEMU that
// requires SASL is refused with an error that says so. The exchange
// honours ctx's deadline on both conns.
func Forward(ctx context.Context, viewer, qemu net.Conn, link *Link, raw []byte, password string) (Info, error) {
	defer protocols.Deadline(ctx, viewer)()
	defer protocols.Deadline(ctx, qemu)()
	f := &forwarder{
		v:        newPeer(ctx, viewer, "the viewer"),
		q:        newPeer(ctx, qemu, "QEMU"),
		link:     link,
		password: password,
	}
	info, err := f.run(raw)
	if err != nil {
		f.tellViewer()
	}
	return info, err
}

type forwarder struct {
	v, q     *peer
	link     *Link
	password string

	replied  bool // the viewer has its link reply
	resulted bool // the viewer has its link result (or refusal)
}

func (f *forwarder) run(raw []byte) (Info, error) {
	if err := checkPassword(f.password); err != nil {
		return Info{}, err
	}
	var key *rsa.PublicKey
	var ours []byte
	if f.password != "" {
		var err error
		if ours, err = proxyPubKey(); err != nil {
			return Info{}, err
		}
	}
	if err := f.q.Write(raw, "the viewer's link message"); err != nil {
		return Info{}, err
	}
	replyRaw, err := f.q.readLinkMessage(linkReplyLen, "its link reply")
	if err != nil {
		return Info{}, err
	}
	reply, err := parseLinkReply(replyRaw, f.q.Name)
	if err != nil {
		return Info{}, err
	}
	info := Info{
		Reply:      reply,
		MiniHeader: f.link.HasCommonCap(CommonCapMiniHeader) && reply.HasCommonCap(CommonCapMiniHeader),
		Takeover:   f.password != "",
	}
	if reply.Error != LinkOK {
		// Pass QEMU's refusal on as it is.
		f.v.Write(replyRaw, "QEMU's link refusal")
		f.replied, f.resulted = true, true
		return info, f.refused(reply.Error, "refused the "+f.link.ChannelType.String()+" channel's link message")
	}
	if reply.HasCommonCap(CommonCapAuthSASL) && !reply.HasCommonCap(CommonCapAuthSpice) {
		return info, failf(LinkErrError, "spice: QEMU requires SASL authentication, which virtconsole cannot pass on; use a SPICE password (ticketing) instead of sasl=on")
	}
	toViewer := replyRaw
	if f.password != "" {
		if key, err = parsePubKey(reply.PubKey[:]); err != nil {
			return info, err
		}
		toViewer = append([]byte(nil), replyRaw...)
		copy(toViewer[linkHeaderLen+4:], ours)
	}
	if err := f.v.Write(toViewer, "the link reply"); err != nil {
		return info, err
	}
	f.replied = true

	// The viewer sends its auth mechanism when the server's reply has
	// AUTH_SELECTION (spice-gtk); spice-server reads one when the
	// client's link message has it (reds_handle_read_link_done). Each
	// side is served by its own rule.
	if reply.HasCommonCap(CommonCapAuthSelection) {
		mech, err := f.v.ReadU32("its auth mechanism")
		if err != nil {
			return info, err
		}
		switch mech {
		case AuthMechSpice:
		case AuthMechSASL:
			return info, failf(LinkErrInvalidData, "spice: the viewer chose SASL authentication, which virtconsole cannot pass on; use the SPICE ticket")
		default:
			return info, failf(LinkErrInvalidData, "spice: the viewer chose auth mechanism %d, which SPICE does not define; is it a SPICE viewer?", mech)
		}
	}
	var ticket [TicketLen]byte
	if err := f.v.Read(ticket[:], "its encrypted ticket"); err != nil {
		return info, err
	}
	if f.password != "" {
		enc, err := encryptTicket(key, f.password)
		if err != nil {
			return info, err
		}
		copy(ticket[:], enc)
	}
	var toQEMU []byte
	if f.link.HasCommonCap(CommonCapAuthSelection) {
		toQEMU = le.AppendUint32(toQEMU, AuthMechSpice)
	}
	toQEMU = append(toQEMU, ticket[:]...)
	if err := f.q.Write(toQEMU, "the encrypted ticket"); err != nil {
		return info, err
	}
	result, err := f.q.ReadU32("its link result")
	if err != nil {
		return info, err
	}
	if err := f.v.Write(le.AppendUint32(nil, result), "the link result"); err != nil {
		return info, err
	}
	f.resulted = true
	if code := LinkError(result); code != LinkOK {
		return info, f.refused(code, "refused the "+f.link.ChannelType.String()+" channel's link")
	}
	return info, nil
}

// refused explains a link error from QEMU.
func (f *forwarder) refused(code LinkError, what string) error {
	herr := &protocols.HandshakeError{Op: "spice: QEMU " + what, Reason: code.String()}
	hint := ""
	switch code {
	case LinkErrPermissionDenied:
		if f.password != "" {
			hint = "; check the SPICE password the resolver gives"
		} else {
			hint = "; QEMU wants a SPICE password: give it to the resolver, or a valid ticket to the viewer"
		}
	case LinkErrNeedSecured:
		hint = "; QEMU wants this channel on its TLS port"
	case LinkErrNeedUnsecured:
		hint = "; QEMU wants this channel on its cleartext port"
	case LinkErrBadConnectionID:
		hint = "; the session it names is not QEMU's current one"
	case LinkErrVersionMismatch:
		hint = "; the viewer's SPICE version is not QEMU's"
	}
	return &codedError{code: code, err: fmt.Errorf("%w%s", herr, hint)}
}

// tellViewer makes a best effort, after a failure, to leave the viewer
// with a link error rather than a bare close: a refusal if it has no
// reply yet, a failed link result if it has one.
func (f *forwarder) tellViewer() {
	switch {
	case f.resulted:
	case f.replied:
		f.v.Write(le.AppendUint32(nil, uint32(LinkErrError)), "the link result")
	default:
		f.v.Write(errorReply(LinkErrError), "the link refusal")
	}
}

// checkPassword bounds the password the proxy sends, as spice-server's
// spice_server_set_ticket does.
func checkPassword(pw string) error {
	if len(pw) > MaxPasswordLen {
		return failf(LinkErrError, "spice: the SPICE password the resolver gives is %d bytes; SPICE passwords are at most %d bytes", len(pw), MaxPasswordLen)
	}
	for i := 0; i < len(pw); i++ {
		if pw[i] == 0 {
			return failf(LinkErrError, "spice: the SPICE password the resolver gives contains a NUL byte, which SPICE cannot send")
		}
	}
	return nil
}

// parsePubKey parses a link reply's key: DER SubjectPublicKeyInfo of a
// 1024-bit RSA key (i2d_PUBKEY in reds_send_link_ack), possibly followed
// by zero padding up to PubKeyLen.
func parsePubKey(b []byte) (*rsa.PublicKey, error) {
	der := b
	// The DER SEQUENCE's own length tells where it ends.
	if len(b) >= 3 && b[0] == 0x30 {
		switch {
		case b[1] < 0x80:
			der = b[:min(len(b), 2+int(b[1]))]
		case b[1] == 0x81:
			der = b[:min(len(b), 3+int(b[2]))]
		case b[1] == 0x82 && len(b) >= 4:
			der = b[:min(len(b), 4+int(b[2])<<8|int(b[3]))]
		}
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, failf(LinkErrError, "spice: QEMU's link reply carries no usable public key (%v); is it a SPICE server?", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, failf(LinkErrError, "spice: QEMU's link reply carries a %T key, not the RSA key SPICE tickets need", k)
	}
	if rk.Size() != TicketLen {
		return nil, failf(LinkErrError, "spice: QEMU's link reply carries a %d-bit RSA key; SPICE tickets need %d bits", rk.N.BitLen(), TicketKeyBits)
	}
	return rk, nil
}

// encryptTicket encrypts a SPICE password for key as spice-gtk does
// (spice_channel_send_spice_ticket): RSA-OAEP with SHA-1 (OpenSSL's
// RSA_PKCS1_OAEP_PADDING) over the password and its terminating NUL.
func encryptTicket(key *rsa.PublicKey, password string) ([]byte, error) {
	msg := append([]byte(password), 0)
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, key, msg, nil)
	if err != nil {
		return nil, failf(LinkErrError, "spice: encrypting the SPICE ticket for QEMU: %v", err)
	}
	return enc, nil
}

// proxyPubKey is the public half of the RSA-1024 key the proxy shows
// viewers when it takes over the ticket step, as PubKeyLen bytes of DER
// SubjectPublicKeyInfo. Tickets encrypted with it are discarded unread,
// so one key serves every link; it is generated on first use.
var proxyPubKey = sync.OnceValues(func() ([]byte, error) {
	k, err := rsa.GenerateKey(rand.Reader, TicketKeyBits)
	if err != nil {
		return nil, failf(LinkErrError, "spice: generating the proxy's ticket key: %v", err)
	}
	return marshalPub(k)
})

// marshalPub returns k's public key as a link reply carries it: DER
// SubjectPublicKeyInfo (162 bytes for RSA-1024 with exponent 65537),
// zero-padded to PubKeyLen.
func marshalPub(k *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, failf(LinkErrError, "spice: encoding the proxy's ticket key: %v", err)
	}
	if len(der) > PubKeyLen {
		return nil, failf(LinkErrError, "spice: the proxy's ticket key is %d bytes of DER, more than SPICE's %d", len(der), PubKeyLen)
	}
	out := make([]byte, PubKeyLen)
	copy(out, der)
	return out, nil
}
