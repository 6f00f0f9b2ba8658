// Package spice follows the SPICE link stage between a viewer and QEMU so
// that a proxy knows which connections belong to which SPICE session.
//
// A SPICE session is several connections, one per channel (main, display,
// inputs, cursor, playback, record, usbredir…), each opening with a link
// stage: the client's link message (connection id, channel type and id,
// capabilities), the server's link reply (an RSA public key and its
// capabilities), the client's encrypted ticket, and the server's link
// result. The package reads the viewer's link message before anything
// reaches QEMU (ReadLink), relays the rest of the link stage and, when the
// proxy knows the SPICE password, answers the ticket step itself (Forward).
// On the main channel it then watches the server's first messages for the
// session id (SPICE_MSG_MAIN_INIT) and the channel list
// (SPICE_MSG_MAIN_CHANNELS_LIST) (WatchMain) before becoming a plain
// pass-through. A Registry holds the sessions of a proxy and decides
// which connections a token may open.
//
// References: spice-protocol's spice/protocol.h (link structures, caps),
// spice/enums.h (channel types, message types, link errors) and
// spice.proto (message bodies); spice-server's reds.cpp (how the server
// reads the link stage and which bounds it applies) and
// red-channel-client.cpp (the data header after the link). All integers
// on the wire are little-endian.
package spice

import (
	"errors"
	"fmt"
)

// Link stage constants (spice/protocol.h).
const (
	// Magic starts every link header: SPICE_MAGIC, the bytes "REDQ".
	Magic = "REDQ"
	// VersionMajor and VersionMinor are SPICE_VERSION_MAJOR and
	// SPICE_VERSION_MINOR. spice-server refuses another major version
	// and ignores the minor.
	VersionMajor = 2
	VersionMinor = 2

	// TicketKeyBits is SPICE_TICKET_KEY_PAIR_LENGTH: the link reply's RSA
	// key is 1024 bits, so an encrypted ticket is 128 bytes.
	TicketKeyBits = 1024
	// PubKeyLen is SPICE_TICKET_PUBKEY_BYTES (1024/8 + 34): the link
	// reply's key as DER SubjectPublicKeyInfo.
	PubKeyLen = TicketKeyBits/8 + 34
	// TicketLen is sizeof(SpiceLinkEncryptedTicket).
	TicketLen = TicketKeyBits / 8
	// MaxPasswordLen is SPICE_MAX_PASSWORD_LENGTH: spice-server's
	// spice_server_set_ticket refuses longer passwords.
	MaxPasswordLen = 60
)

// Sizes of the fixed parts of the link stage (packed structs of
// spice/protocol.h).
const (
	linkHeaderLen = 16                 // SpiceLinkHeader: magic, major, minor, size
	linkMessLen   = 18                 // SpiceLinkMess without caps
	linkReplyLen  = 4 + PubKeyLen + 12 // SpiceLinkReply without caps: 178
	miniHeaderLen = 6                  // SpiceMiniDataHeader: u16 type, u32 size
	fullHeaderLen = 18                 // SpiceDataHeader: u64 serial, u16 type, u32 size, u32 sub_list
	authMechLen   = 4                  // SpiceLinkAuthMechanism
	linkResultLen = 4                  // u32 SpiceLinkErr after the ticket
	maxHeaderLen  = max(fullHeaderLen, miniHeaderLen)
)

// Bounds on what is read from either peer.
const (
	// MaxLinkSize bounds a link message or reply body (the header's size
	// field): spice-server refuses link messages over 4096 bytes
	// (reds_handle_read_header_done).
	MaxLinkSize = 4096
	// MaxCaps bounds each capability count in a link message or reply,
	// as spice-server does (reds_handle_read_link_done).
	MaxCaps = 1024
	// MaxInspectedMessage bounds the main-channel messages WatchMain
	// reads whole (SPICE_MSG_MAIN_INIT, SPICE_MSG_MAIN_CHANNELS_LIST);
	// other messages are counted past, never buffered.
	MaxInspectedMessage = 64 << 10
	// MaxChannels bounds the entries of a channel list.
	MaxChannels = 1024
)

// ChannelType is a SPICE channel type (spice/enums.h, SPICE_CHANNEL_*).
type ChannelType uint8

// Channel types.
const (
	ChannelMain      ChannelType = 1  // SPICE_CHANNEL_MAIN
	ChannelDisplay   ChannelType = 2  // SPICE_CHANNEL_DISPLAY
	ChannelInputs    ChannelType = 3  // SPICE_CHANNEL_INPUTS
	ChannelCursor    ChannelType = 4  // SPICE_CHANNEL_CURSOR
	ChannelPlayback  ChannelType = 5  // SPICE_CHANNEL_PLAYBACK
	ChannelRecord    ChannelType = 6  // SPICE_CHANNEL_RECORD
	ChannelTunnel    ChannelType = 7  // SPICE_CHANNEL_TUNNEL (removed from spice-server)
	ChannelSmartcard ChannelType = 8  // SPICE_CHANNEL_SMARTCARD
	ChannelUSBRedir  ChannelType = 9  // SPICE_CHANNEL_USBREDIR
	ChannelPort      ChannelType = 10 // SPICE_CHANNEL_PORT
	ChannelWebDAV    ChannelType = 11 // SPICE_CHANNEL_WEBDAV
)

var channelNames = [...]string{
	ChannelMain:      "main",
	ChannelDisplay:   "display",
	ChannelInputs:    "inputs",
	ChannelCursor:    "cursor",
	ChannelPlayback:  "playback",
	ChannelRecord:    "record",
	ChannelTunnel:    "tunnel",
	ChannelSmartcard: "smartcard",
	ChannelUSBRedir:  "usbredir",
	ChannelPort:      "port",
	ChannelWebDAV:    "webdav",
}

// Known reports whether t is a channel type spice/enums.h defines.
func (t ChannelType) Known() bool { return t >= ChannelMain && t <= ChannelWebDAV }

func (t ChannelType) String() string {
	if t.Known() {
		return channelNames[t]
	}
	return fmt.Sprintf("channel-type-%d", uint8(t))
}

// ChannelID names one channel of a session: its type and its id among the
// channels of that type (display 0, display 1…), as in the channel list
// (spice.proto ChannelId).
type ChannelID struct {
	Type ChannelType
	ID   uint8
}

func (c ChannelID) String() string { return fmt.Sprintf("%s:%d", c.Type, c.ID) }

// Common capabilities (spice/protocol.h, SPICE_COMMON_CAP_*): bit numbers
// in the common caps words of a link message or reply.
const (
	CommonCapAuthSelection = 0 // SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION
	CommonCapAuthSpice     = 1 // SPICE_COMMON_CAP_AUTH_SPICE
	CommonCapAuthSASL      = 2 // SPICE_COMMON_CAP_AUTH_SASL
	CommonCapMiniHeader    = 3 // SPICE_COMMON_CAP_MINI_HEADER
)

// Auth mechanisms a client selects (SpiceLinkAuthMechanism) when
// SPICE_COMMON_CAP_PROTOCOL_AUTH_SELECTION is set: the cap number of the
// mechanism (reds_handle_auth_mechanism).
const (
	AuthMechSpice uint32 = CommonCapAuthSpice
	AuthMechSASL  uint32 = CommonCapAuthSASL
)

// MsgType is the type of a message after the link stage. Numbers are
// per channel and direction (spice/enums.h): SPICE_MSG_* from the server,
// SPICE_MSGC_* from the client.
type MsgType uint16

// Message types this package or its tests use.
const (
	MsgSetAck              MsgType = 3   // SPICE_MSG_SET_ACK (every channel)
	MsgPing                MsgType = 4   // SPICE_MSG_PING (every channel)
	MsgNotify              MsgType = 7   // SPICE_MSG_NOTIFY (every channel)
	MsgMainInit            MsgType = 103 // SPICE_MSG_MAIN_INIT: u32 session_id first
	MsgMainChannelsList    MsgType = 104 // SPICE_MSG_MAIN_CHANNELS_LIST: u32 n, n × {u8 type, u8 id}
	MsgcAckSync            MsgType = 1   // SPICE_MSGC_ACK_SYNC
	MsgcAck                MsgType = 2   // SPICE_MSGC_ACK
	MsgcPong               MsgType = 3   // SPICE_MSGC_PONG
	MsgcMainAttachChannels MsgType = 104 // SPICE_MSGC_MAIN_ATTACH_CHANNELS: empty body
)

// Messages of the inputs channel (spice-protocol's spice/enums.h; bodies
// as spice.proto's InputsChannel, little-endian like every integer).
const (
	MsgInputsInit           MsgType = 101 // SPICE_MSG_INPUTS_INIT: u16 keyboard modifiers
	MsgInputsKeyModifiers   MsgType = 102 // SPICE_MSG_INPUTS_KEY_MODIFIERS: u16 keyboard modifiers
	MsgInputsMouseMotionAck MsgType = 111 // SPICE_MSG_INPUTS_MOUSE_MOTION_ACK: empty; one per 4 motions
	MsgcInputsKeyDown       MsgType = 101 // SPICE_MSGC_INPUTS_KEY_DOWN: u32 code (scancode bytes, LSB first)
	MsgcInputsKeyUp         MsgType = 102 // SPICE_MSGC_INPUTS_KEY_UP: u32 code (break code bytes)
	MsgcInputsKeyModifiers  MsgType = 103 // SPICE_MSGC_INPUTS_KEY_MODIFIERS: u16 keyboard modifiers
	MsgcInputsMouseMotion   MsgType = 111 // SPICE_MSGC_INPUTS_MOUSE_MOTION: i32 dx, i32 dy, u16 buttons
	MsgcInputsMousePosition MsgType = 112 // SPICE_MSGC_INPUTS_MOUSE_POSITION: u32 x, u32 y, u16 buttons, u8 display
	MsgcInputsMousePress    MsgType = 113 // SPICE_MSGC_INPUTS_MOUSE_PRESS: u8 button, u16 buttons
	MsgcInputsMouseRelease  MsgType = 114 // SPICE_MSGC_INPUTS_MOUSE_RELEASE: u8 button, u16 buttons
)

// LinkError is a SPICE link error (spice/enums.h, SpiceLinkErr): the
// error field of a link reply and the link result after the ticket. It
// is also an error value, so that errors.As finds the code an error
// carries (see Code).
type LinkError uint32

// Link errors.
const (
	LinkOK                  LinkError = 0 // SPICE_LINK_ERR_OK
	LinkErrError            LinkError = 1 // SPICE_LINK_ERR_ERROR
	LinkErrInvalidMagic     LinkError = 2 // SPICE_LINK_ERR_INVALID_MAGIC
	LinkErrInvalidData      LinkError = 3 // SPICE_LINK_ERR_INVALID_DATA
	LinkErrVersionMismatch  LinkError = 4 // SPICE_LINK_ERR_VERSION_MISMATCH
	LinkErrNeedSecured      LinkError = 5 // SPICE_LINK_ERR_NEED_SECURED
	LinkErrNeedUnsecured    LinkError = 6 // SPICE_LINK_ERR_NEED_UNSECURED
	LinkErrPermissionDenied LinkError = 7 // SPICE_LINK_ERR_PERMISSION_DENIED
	LinkErrBadConnectionID  LinkError = 8 // SPICE_LINK_ERR_BAD_CONNECTION_ID
	LinkErrChannelNotAvail  LinkError = 9 // SPICE_LINK_ERR_CHANNEL_NOT_AVAILABLE
)

var linkErrorNames = [...]string{
	LinkOK:                  "ok",
	LinkErrError:            "error",
	LinkErrInvalidMagic:     "invalid magic",
	LinkErrInvalidData:      "invalid data",
	LinkErrVersionMismatch:  "version mismatch",
	LinkErrNeedSecured:      "the channel needs TLS",
	LinkErrNeedUnsecured:    "the channel must not use TLS",
	LinkErrPermissionDenied: "permission denied",
	LinkErrBadConnectionID:  "bad connection id",
	LinkErrChannelNotAvail:  "channel not available",
}

func (e LinkError) String() string {
	if int(e) < len(linkErrorNames) {
		return linkErrorNames[e]
	}
	return fmt.Sprintf("link error %d", uint32(e))
}

// Error makes a LinkError usable as an error (its String).
func (e LinkError) Error() string { return e.String() }

// Code returns the SPICE link error that err carries (a refusal by the
// Registry, QEMU's link error, a malformed link message), or LinkErrError
// when it carries none. The proxy sends it to the viewer with Refuse.
func Code(err error) LinkError {
	if err == nil {
		return LinkOK
	}
	var c coder
	if errors.As(err, &c) {
		return c.linkError()
	}
	return LinkErrError
}

type coder interface{ linkError() LinkError }

// codedError is an error with the link error that tells the viewer.
type codedError struct {
	code LinkError
	err  error
}

func (e *codedError) Error() string        { return e.err.Error() }
func (e *codedError) Unwrap() error        { return e.err }
func (e *codedError) linkError() LinkError { return e.code }

// failf returns a one-line error carrying code.
func failf(code LinkError, format string, args ...any) error {
	return &codedError{code: code, err: fmt.Errorf(format, args...)}
}

// hasCap tests bit cap in caps, as spice-common's test_capability.
func hasCap(caps []uint32, c int) bool {
	w := c / 32
	return w < len(caps) && caps[w]&(1<<(c%32)) != 0
}
