package spice

import (
	"github.com/virtconsole/virtconsole/protocols"

	"context"
	"encoding/binary"
	"fmt"
	"net"
)

var le = binary.LittleEndian

// Link is a client's link message (SpiceLinkMess, spice/protocol.h): the
// first thing on every SPICE connection.
type Link struct {
	// ConnectionID is 0 for the main channel of a new session, and the
	// session id (from SPICE_MSG_MAIN_INIT) for every other channel.
	ConnectionID uint32
	ChannelType  ChannelType
	ChannelID    uint8
	CommonCaps   []uint32
	ChannelCaps  []uint32
}

// Channel returns the channel the link asks for.
func (l *Link) Channel() ChannelID { return ChannelID{l.ChannelType, l.ChannelID} }

// HasCommonCap reports whether the link message sets common cap c.
func (l *Link) HasCommonCap(c int) bool { return hasCap(l.CommonCaps, c) }

func (l *Link) String() string {
	return fmt.Sprintf("%s connection-id %d", l.Channel(), l.ConnectionID)
}

// Marshal returns the link header and message as a client sends them:
// caps right after the fixed part (caps_offset 18).
func (l *Link) Marshal() []byte {
	body := make([]byte, 0, linkMessLen+4*(len(l.CommonCaps)+len(l.ChannelCaps)))
	body = le.AppendUint32(body, l.ConnectionID)
	body = append(body, byte(l.ChannelType), l.ChannelID)
	body = le.AppendUint32(body, uint32(len(l.CommonCaps)))
	body = le.AppendUint32(body, uint32(len(l.ChannelCaps)))
	body = le.AppendUint32(body, linkMessLen)
	body = appendCaps(body, l.CommonCaps, l.ChannelCaps)
	return append(linkHeader(len(body)), body...)
}

// LinkReply is the server's answer to a link message (SpiceLinkReply).
type LinkReply struct {
	Error LinkError
	// PubKey is the server's 1024-bit RSA key for this link, DER
	// SubjectPublicKeyInfo, zero-padded to PubKeyLen (all zero in error
	// replies).
	PubKey      [PubKeyLen]byte
	CommonCaps  []uint32
	ChannelCaps []uint32
}

// HasCommonCap reports whether the reply sets common cap c.
func (r *LinkReply) HasCommonCap(c int) bool { return hasCap(r.CommonCaps, c) }

// Marshal returns the link header and reply as a server sends them (caps
// right after the fixed part, caps_offset 178).
func (r *LinkReply) Marshal() []byte {
	body := make([]byte, 0, linkReplyLen+4*(len(r.CommonCaps)+len(r.ChannelCaps)))
	body = le.AppendUint32(body, uint32(r.Error))
	body = append(body, r.PubKey[:]...)
	body = le.AppendUint32(body, uint32(len(r.CommonCaps)))
	body = le.AppendUint32(body, uint32(len(r.ChannelCaps)))
	body = le.AppendUint32(body, linkReplyLen)
	body = appendCaps(body, r.CommonCaps, r.ChannelCaps)
	return append(linkHeader(len(body)), body...)
}

func linkHeader(size int) []byte {
	h := make([]byte, 0, linkHeaderLen+size)
	h = append(h, Magic...)
	h = le.AppendUint32(h, VersionMajor)
	h = le.AppendUint32(h, VersionMinor)
	return le.AppendUint32(h, uint32(size))
}

func appendCaps(b []byte, common, channel []uint32) []byte {
	for _, c := range common {
		b = le.AppendUint32(b, c)
	}
	for _, c := range channel {
		b = le.AppendUint32(b, c)
	}
	return b
}

// linkHeaderSize checks a link header (SpiceLinkHeader) and returns its
// size field, which it bounds to [min, MaxLinkSize]. who names the sender
// for errors ("the viewer", "QEMU"). The codes are those spice-server
// answers with (reds_handle_read_magic_done, _header_done).
func linkHeaderSize(h []byte, min int, who string) (int, error) {
	if len(h) < linkHeaderLen {
		return 0, failf(LinkErrInvalidData, "spice: %s sent a link header of %d bytes, want %d", who, len(h), linkHeaderLen)
	}
	if string(h[:4]) != Magic {
		return 0, failf(LinkErrInvalidMagic, "spice: %s does not speak SPICE (it sent %q, not the link magic %q)", who, h[:4], Magic)
	}
	if major := le.Uint32(h[4:]); major != VersionMajor {
		return 0, failf(LinkErrVersionMismatch, "spice: %s speaks SPICE %d.%d; virtconsole speaks %d.x", who, major, le.Uint32(h[8:]), VersionMajor)
	}
	size := le.Uint32(h[12:])
	if size < uint32(min) || size > MaxLinkSize {
		return 0, failf(LinkErrInvalidData, "spice: %s sent a link message of %d bytes; want %d to %d", who, size, min, MaxLinkSize)
	}
	return int(size), nil
}

// parseCaps reads the caps of a link message or reply body b whose fixed
// part is fixed bytes long and ends with num_common_caps,
// num_channel_caps, caps_offset; caps_offset counts from the start of b.
func parseCaps(b []byte, fixed int, who, what string) (common, channel []uint32, err error) {
	nCommon := le.Uint32(b[fixed-12:])
	nChannel := le.Uint32(b[fixed-8:])
	off := le.Uint32(b[fixed-4:])
	if nCommon > MaxCaps || nChannel > MaxCaps {
		return nil, nil, failf(LinkErrInvalidData, "spice: %s sent a %s with %d common and %d channel caps; at most %d each", who, what, nCommon, nChannel, MaxCaps)
	}
	n := uint64(nCommon) + uint64(nChannel)
	if n == 0 {
		return nil, nil, nil
	}
	if uint64(off) < uint64(fixed) || uint64(off)+4*n > uint64(len(b)) {
		return nil, nil, failf(LinkErrInvalidData, "spice: %s sent a %s whose caps (%d words at offset %d) do not fit in its %d bytes", who, what, n, off, len(b))
	}
	words := make([]uint32, n)
	for i := range words {
		words[i] = le.Uint32(b[int(off)+4*i:])
	}
	if nCommon > 0 {
		common = words[:nCommon:nCommon]
	}
	if nChannel > 0 {
		channel = words[nCommon:]
	}
	return common, channel, nil
}

// ParseLink parses a link header and message as read from a client (the
// raw bytes ReadLink returns). It applies spice-server's checks: magic,
// major version 2, a size of 18 to MaxLinkSize bytes that b holds
// exactly, at most MaxCaps caps of each kind, caps inside the message.
// Errors carry the link error spice-server would answer (see Code).
func ParseLink(b []byte) (*Link, error) {
	return parseLink(b, "the viewer")
}

func parseLink(b []byte, who string) (*Link, error) {
	size, err := linkHeaderSize(b, linkMessLen, who)
	if err != nil {
		return nil, err
	}
	if len(b) != linkHeaderLen+size {
		return nil, failf(LinkErrInvalidData, "spice: %s's link message is %d bytes, its header says %d", who, len(b)-linkHeaderLen, size)
	}
	body := b[linkHeaderLen:]
	l := &Link{
		ConnectionID: le.Uint32(body),
		ChannelType:  ChannelType(body[4]),
		ChannelID:    body[5],
	}
	l.CommonCaps, l.ChannelCaps, err = parseCaps(body, linkMessLen, who, "link message")
	if err != nil {
		return nil, err
	}
	return l, nil
}

// ParseLinkReply parses a link header and reply as read from a server.
// Like ParseLink it bounds the size and the caps; b must hold exactly the
// header and the size it announces, at least the fixed SpiceLinkReply.
func ParseLinkReply(b []byte) (*LinkReply, error) {
	return parseLinkReply(b, "QEMU")
}

func parseLinkReply(b []byte, who string) (*LinkReply, error) {
	size, err := linkHeaderSize(b, linkReplyLen, who)
	if err != nil {
		return nil, err
	}
	if len(b) != linkHeaderLen+size {
		return nil, failf(LinkErrInvalidData, "spice: %s's link reply is %d bytes, its header says %d", who, len(b)-linkHeaderLen, size)
	}
	body := b[linkHeaderLen:]
	r := &LinkReply{Error: LinkError(le.Uint32(body))}
	copy(r.PubKey[:], body[4:])
	if r.Error != LinkOK {
		// Error replies are zero but for the code
		// (reds_send_link_error); their caps do not matter.
		return r, nil
	}
	r.CommonCaps, r.ChannelCaps, err = parseCaps(body, linkReplyLen, who, "link reply")
	if err != nil {
		return nil, err
	}
	return r, nil
}

// errorReply is the link reply spice-server sends to refuse a link
// message (reds_send_link_error): the header and a SpiceLinkReply that is
// zero but for the error.
func errorReply(code LinkError) []byte {
	r := LinkReply{Error: code}
	return r.Marshal()
}

// peer reads and writes one leg's link stage (see protocols.Peer: exact
// reads, so bytes after the link stage belong to the pass-through).
type peer struct{ protocols.Peer }

func newPeer(ctx context.Context, conn net.Conn, name string) *peer {
	return &peer{protocols.Peer{Ctx: ctx, Conn: conn, Name: name, Proto: "spice", Stage: "link stage", Order: le}}
}

// readLinkMessage reads a link header and the body it announces (at
// least min bytes, at most MaxLinkSize) and returns both.
func (p *peer) readLinkMessage(min int, what string) ([]byte, error) {
	var h [linkHeaderLen]byte
	if err := p.Read(h[:], what+" header"); err != nil {
		return nil, err
	}
	size, err := linkHeaderSize(h[:], min, p.Name)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, linkHeaderLen+size)
	copy(raw, h[:])
	if err := p.Read(raw[linkHeaderLen:], what); err != nil {
		return nil, err
	}
	return raw, nil
}

// AppendMessage appends a data message of type typ with a mini header
// (type and size) or a full one (serial, type, size, no sub-list), as
// the channel negotiated (SPICE_COMMON_CAP_MINI_HEADER).
func AppendMessage(b []byte, mini bool, serial uint64, typ MsgType, body []byte) []byte {
	if !mini {
		b = le.AppendUint64(b, serial)
	}
	b = le.AppendUint16(b, uint16(typ))
	b = le.AppendUint32(b, uint32(len(body)))
	if !mini {
		b = le.AppendUint32(b, 0)
	}
	return append(b, body...)
}
