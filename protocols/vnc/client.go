package vnc

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"

	"github.com/virtconsole/virtconsole/protocols"
)

// Client runs the viewer leg, after Server has succeeded on qemu: it
// offers RFB 3.8, serves viewers speaking 3.3, 3.7 or 3.8 (any other
// well-formed version as 3.3, RFC 6143 §7.1.1), offers only security type
// None (the viewer's connection is already authenticated) and sends the
// SecurityResult where the viewer's version has one. It returns qemu
// unchanged and viewer wrapped in Input (ClientInit always shared; with
// ViewOnly, no input; with Encodings, steered): from ClientInit on, the caller passes bytes
// through. The exchange honours ctx's deadline.
func (h *Handshaker) Client(ctx context.Context, viewer, qemu net.Conn) (net.Conn, net.Conn, error) {
	defer protocols.Deadline(ctx, viewer)()
	p := newPeer(ctx, viewer, "the viewer")
	v, err := viewerVersion(p)
	if err != nil {
		return nil, nil, err
	}
	if v == rfb33 {
		// 3.3: the server decides and sends the type as a u32; no
		// SecurityResult follows None.
		if err := p.Write([]byte{0, 0, 0, byte(SecurityNone)}, "the security type"); err != nil {
			return nil, nil, err
		}
		return newInput(viewer, h.ViewOnly, h.Encodings), qemu, nil
	}
	if err := p.Write([]byte{1, byte(SecurityNone)}, "the security types"); err != nil {
		return nil, nil, err
	}
	c, err := p.ReadU8("its security type")
	if err != nil {
		return nil, nil, err
	}
	if SecurityType(c) != SecurityNone {
		if v == rfb38 {
			// Best effort: tell the viewer why before the caller closes.
			p.Write(failure([]byte{0, 0, 0, securityResultFailed}, "only security type None is offered"), "the security result")
		}
		return nil, nil, fmt.Errorf("vnc: the viewer chose security type %s, which was not offered (only None); is it a VNC viewer?", SecurityType(c))
	}
	if v == rfb38 {
		// RFC 6143 §7.2.1: in 3.8 a SecurityResult follows None; in 3.7
		// nothing does.
		if err := p.Write([]byte{0, 0, 0, securityResultOK}, "the security result"); err != nil {
			return nil, nil, err
		}
	}
	return newInput(viewer, h.ViewOnly, h.Encodings), qemu, nil
}

// Refuse serves the viewer's version exchange, then refuses the
// connection with reason in the way the viewer's RFB version supports:
// a u32 security type 0 (3.3) or an empty list of security types (3.7,
// 3.8), each followed by the reason string (RFC 6143 §7.1.2). The proxy
// uses it when the QEMU leg failed and the viewer is already connected.
// The caller closes viewer afterwards.
func Refuse(ctx context.Context, viewer net.Conn, reason string) error {
	defer protocols.Deadline(ctx, viewer)()
	p := newPeer(ctx, viewer, "the viewer")
	v, err := viewerVersion(p)
	if err != nil {
		return err
	}
	head := []byte{0} // 3.7+: u8 number-of-security-types = 0
	if v == rfb33 {
		head = []byte{0, 0, 0, byte(SecurityInvalid)} // 3.3: u32 security-type
	}
	return p.Write(failure(head, reason), "the refusal")
}

// failure builds head (a zero security type count or type, or a failed
// SecurityResult) followed by a reason string: u32 length, then the text
// (one line, at most MaxReasonLen bytes).
func failure(head []byte, reason string) []byte {
	reason = cleanReason(reason)
	if len(reason) > MaxReasonLen {
		reason = strings.ToValidUTF8(reason[:MaxReasonLen], "")
	}
	b := make([]byte, 0, len(head)+4+len(reason))
	b = append(b, head...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(reason)))
	return append(b, reason...)
}

// viewerVersion sends our ProtocolVersion (3.8) and reads the viewer's.
func viewerVersion(p *peer) (rfbVersion, error) {
	if err := p.Write([]byte(ProtocolVersion38), "our RFB version"); err != nil {
		return 0, err
	}
	var b [versionLen]byte
	if err := p.Read(b[:], "its RFB version"); err != nil {
		return 0, err
	}
	major, minor, ok := parseVersion(b[:])
	if !ok {
		return 0, fmt.Errorf("vnc: the viewer did not answer with an RFB version (it sent %s); connect a VNC viewer", quoteVersion(b[:]))
	}
	switch {
	case major == 3 && minor == 8:
		return rfb38, nil
	case major == 3 && minor == 7:
		return rfb37, nil
	}
	return rfb33, nil
}
