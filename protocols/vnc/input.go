package vnc

import (
	"encoding/binary"
	"fmt"
	"net"
)

// ClientMessageType is the first byte of an RFB client-to-server message
// (RFC 6143 §7.5; 150 and up from rfbproto, IANA "RFB Client-to-Server
// Message Types").
type ClientMessageType uint8

// The client messages a view-only viewer may send, and the ones it may
// not (input). Others end a view-only session: their length is unknown.
const (
	MsgSetPixelFormat           ClientMessageType = 0   // RFC 6143 §7.5.1: 20 bytes
	MsgSetEncodings             ClientMessageType = 2   // §7.5.2: 4 + 4 per encoding
	MsgFramebufferUpdateRequest ClientMessageType = 3   // §7.5.3: 10 bytes
	MsgKeyEvent                 ClientMessageType = 4   // §7.5.4: 8 bytes (input)
	MsgPointerEvent             ClientMessageType = 5   // §7.5.5: 6 bytes (input)
	MsgClientCutText            ClientMessageType = 6   // §7.5.6: 8 + length (input)
	MsgEnableContinuousUpdates  ClientMessageType = 150 // rfbproto: 10 bytes
	MsgClientFence              ClientMessageType = 248 // rfbproto: 9 + length
	MsgXVP                      ClientMessageType = 250 // rfbproto: 4 bytes
	MsgSetDesktopSize           ClientMessageType = 251 // rfbproto: 8 + 16 per screen
	MsgQEMU                     ClientMessageType = 255 // rfbproto "QEMU Client Message": a sub-type follows
)

// QEMU client message sub-types (rfbproto "QEMU Client Message").
const (
	qemuExtendedKeyEvent = 0 // 12 bytes (input)
	qemuAudio            = 1 // 4 bytes, or 10 for "set format" (operation 2)
)

// Input wraps a viewer's connection after the handshake (its Reads are
// what goes to QEMU, from ClientInit on). The ClientInit shared-flag is
// always set (RFC 6143 §7.3.1), so that no viewer can ask QEMU for
// exclusive access and disconnect the others. With viewOnly, the
// viewer's input never reaches QEMU: KeyEvent, PointerEvent,
// ClientCutText and QEMU's extended key events are dropped, the rest
// passes; a message the filter cannot size ends the connection (an
// error from Read) rather than pass unchecked.
func Input(viewer net.Conn, viewOnly bool) net.Conn {
	return newInput(viewer, viewOnly, nil)
}

// maxSetEncodings bounds a SetEncodings message the steering holds
// whole: 4 + 4 per encoding, at most 65535 of them (RFC 6143 §7.5.2).
const maxSetEncodings = 4 + 4*0xffff

func newInput(viewer net.Conn, viewOnly bool, encodings func(encoding int32) bool) net.Conn {
	return &input{Conn: viewer, viewOnly: viewOnly, encodings: encodings}
}

type input struct {
	net.Conn
	viewOnly  bool
	encodings func(encoding int32) bool // Handshaker.Encodings: the steering, or nil
	inited    bool                      // ClientInit has gone by

	// viewOnly's parser: bytes read and not yet given out are
	// buf[r:w]; the current message has pass bytes left to give out,
	// or drop bytes to discard.
	buf        []byte
	r, w       int
	pass, drop int
	need       int // a SetEncodings to steer needs this many bytes in buf
}

func (c *input) Read(p []byte) (int, error) {
	if !c.viewOnly && c.encodings == nil {
		n, err := c.Conn.Read(p)
		if n > 0 && !c.inited {
			p[0], c.inited = 1, true // ClientInit: shared-flag
		}
		return n, err
	}
	if c.buf == nil {
		c.buf = make([]byte, 4<<10)
	}
	for {
		n, err := c.filter(p)
		if n > 0 || err != nil {
			return n, err
		}
		if c.r == c.w {
			c.r, c.w = 0, 0
		} else if c.w == len(c.buf) || c.r+c.need > len(c.buf) {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		if c.need > len(c.buf) {
			// A SetEncodings longer than buf, held whole: grown once,
			// to at most maxSetEncodings.
			c.buf = append(c.buf[:c.w], make([]byte, c.need-c.w)...)
		}
		m, err := c.Conn.Read(c.buf[c.w:])
		c.w += m
		if m == 0 && err != nil {
			return 0, err
		}
	}
}

// filter gives out what buf holds of passed messages, into p.
func (c *input) filter(p []byte) (int, error) {
	o := 0
	for o < len(p) && c.r < c.w {
		switch {
		case c.pass > 0:
			n := copy(p[o:], c.buf[c.r:min(c.w, c.r+c.pass)])
			o, c.r, c.pass = o+n, c.r+n, c.pass-n
		case c.drop > 0:
			n := min(c.w-c.r, c.drop)
			c.r, c.drop = c.r+n, c.drop-n
		case !c.inited:
			p[o], c.inited = 1, true // ClientInit: shared-flag
			o, c.r = o+1, c.r+1
		default:
			size, input, err := ClientMessageSize(c.buf[c.r:c.w])
			if err != nil {
				return o, err
			}
			if size == 0 {
				if c.w-c.r == len(c.buf) {
					return o, fmt.Errorf("vnc: a view-only viewer's message header is over %d bytes", len(c.buf))
				}
				return o, nil // need more of the header
			}
			switch {
			case input && c.viewOnly:
				c.drop = size
			case c.encodings != nil && ClientMessageType(c.buf[c.r]) == MsgSetEncodings:
				if c.w-c.r < size {
					c.need = size
					return o, nil // steered whole: wait for all of it
				}
				c.need = 0
				kept := steer(c.buf[c.r:c.r+size], c.encodings)
				c.pass, c.drop = kept, size-kept
			default:
				c.pass = size
			}
		}
	}
	return o, nil
}

// steer rewrites the SetEncodings message m in place so that it lists
// only the encodings allow keeps, in the viewer's order of preference,
// and returns its new length (the bytes after it are to be dropped).
func steer(m []byte, allow func(encoding int32) bool) int {
	n := int(binary.BigEndian.Uint16(m[2:]))
	k := 0
	for i := 0; i < n; i++ {
		e := m[4+4*i : 8+4*i]
		if allow(int32(binary.BigEndian.Uint32(e))) {
			copy(m[4+4*k:], e)
			k++
		}
	}
	binary.BigEndian.PutUint16(m[2:], uint16(k))
	return 4 + 4*k
}

// ClientMessageSize returns the length of the RFB client message at the
// start of b (after ClientInit) and whether it is input (KeyEvent,
// PointerEvent, ClientCutText, QEMU's extended key event); 0 when b
// holds too little to tell. A message type it cannot size is an error:
// the stream cannot be followed past it. Input's filter and the session
// recorder (which leaves input out) use it.
func ClientMessageSize(b []byte) (size int, isInput bool, err error) {
	need := func(n int) bool { return len(b) >= n }
	switch t := ClientMessageType(b[0]); t {
	case MsgSetPixelFormat:
		return 20, false, nil
	case MsgSetEncodings:
		if !need(4) {
			return 0, false, nil
		}
		return 4 + 4*int(binary.BigEndian.Uint16(b[2:])), false, nil
	case MsgFramebufferUpdateRequest, MsgEnableContinuousUpdates:
		return 10, false, nil
	case MsgKeyEvent:
		return 8, true, nil
	case MsgPointerEvent:
		return 6, true, nil
	case MsgClientCutText:
		if !need(8) {
			return 0, false, nil
		}
		// A negative length is the extended clipboard's (rfbproto
		// "Extended Clipboard Pseudo-Encoding"): its absolute value.
		n := int64(int32(binary.BigEndian.Uint32(b[4:])))
		return 8 + int(max(n, -n)), true, nil
	case MsgClientFence:
		if !need(9) {
			return 0, false, nil
		}
		return 9 + int(b[8]), false, nil
	case MsgXVP:
		return 4, false, nil
	case MsgSetDesktopSize:
		if !need(8) {
			return 0, false, nil
		}
		return 8 + 16*int(b[6]), false, nil
	case MsgQEMU:
		if !need(2) {
			return 0, false, nil
		}
		switch b[1] {
		case qemuExtendedKeyEvent:
			return 12, true, nil
		case qemuAudio:
			if !need(4) {
				return 0, false, nil
			}
			if binary.BigEndian.Uint16(b[2:]) == 2 {
				return 10, false, nil
			}
			return 4, false, nil
		}
		return 0, false, fmt.Errorf("vnc: the viewer sent QEMU client message sub-type %d, which the proxy cannot size", b[1])
	default:
		return 0, false, fmt.Errorf("vnc: the viewer sent client message type %d, which the proxy cannot size", uint8(t))
	}
}

// CloseWrite passes a half-close on to the viewer's conn when it has one.
func (c *input) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
