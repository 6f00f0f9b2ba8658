package wsconn

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Frame layout (RFC 6455, section 5.2).
const (
	finBit  = 0x80 // first byte: final fragment
	rsvBits = 0x70 // first byte: RSV1-3, which no negotiated extension defines here
	opMask  = 0x0f // first byte: opcode
	maskBit = 0x80 // second byte: the payload is masked

	len16 = 126 // 7-bit length value announcing a 16-bit length
	len64 = 127 // 7-bit length value announcing a 64-bit length

	maxControlPayload = 125 // section 5.5
	maxHeader         = 14  // 2 + 8 (64-bit length) + 4 (masking key)

	// maxPend is the most undecoded input a Conn keeps between reads: an
	// incomplete header, or an incomplete control frame (header and
	// payload), which is decoded only once whole.
	maxPend = 2 + 4 + maxControlPayload + 8 // rounded up past 131
)

// An opcode is a frame's type (RFC 6455, section 5.2; 11.8 for the
// registry).
type opcode byte

const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xa
)

func (op opcode) control() bool { return op&0x8 != 0 }

// Close codes a peer may send (RFC 6455, section 7.4.1, and the IANA
// registry of section 11.7): 1004-1006 and 1015 are reserved for reports
// and never sent; 1000-2999 beyond the registered ones are reserved for
// the protocol; 3000-4999 belong to libraries and applications.
const (
	closeUnsupported    = 1003
	closeNoStatus       = 1005 // reported for a close frame without a code
	closeInvalidPayload = 1007
	closePolicy         = 1008
	closeTooBig         = 1009
	closeExtension      = 1010
	closeServiceRestart = 1012
	closeTryAgainLater  = 1013
	closeTLSHandshake   = 1015
)

func validReceivedCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// protocolError is a peer's violation of RFC 6455: the Conn is failed
// with close code 1002 (or 1007 for a close reason that is not UTF-8).
type protocolError struct {
	code int
	msg  string
}

func (e *protocolError) Error() string { return "websocket: protocol error: " + e.msg }

func protoErr(format string, args ...any) *protocolError {
	return &protocolError{code: CloseProtocolError, msg: fmt.Sprintf(format, args...)}
}

// frameHeader writes the header of an unfragmented frame of op with n
// payload bytes into b (at least maxHeader long) and returns its length;
// with key it sets the mask bit and appends the masking key.
func frameHeader(b []byte, op opcode, n int, key *[4]byte) int {
	b[0] = finBit | byte(op)
	h := 2
	switch {
	case n < len16:
		b[1] = byte(n)
	case n <= 0xffff:
		b[1] = len16
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		h = 4
	default:
		b[1] = len64
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		h = 10
	}
	if key != nil {
		b[1] |= maskBit
		copy(b[h:], key[:])
		h += 4
	}
	return h
}

// maskCopy XORs src with the masking key, starting at key position pos,
// into dst (RFC 6455, section 5.3) and returns the key position after it.
// dst may overlap src if it does not start after it: decoding moves
// payload toward the front of the buffer it was read into. Eight bytes
// at a time, each word loaded before it is stored.
func maskCopy(dst, src []byte, key [4]byte, pos int) int {
	n := len(src)
	dst = dst[:n]
	k := [4]byte{key[pos&3], key[(pos+1)&3], key[(pos+2)&3], key[(pos+3)&3]}
	k32 := uint64(binary.LittleEndian.Uint32(k[:]))
	kw := k32 | k32<<32
	i := 0
	for ; i+32 <= n; i += 32 {
		s, d := src[i:i+32], dst[i:i+32]
		w0 := binary.LittleEndian.Uint64(s[0:]) ^ kw
		w1 := binary.LittleEndian.Uint64(s[8:]) ^ kw
		w2 := binary.LittleEndian.Uint64(s[16:]) ^ kw
		w3 := binary.LittleEndian.Uint64(s[24:]) ^ kw
		binary.LittleEndian.PutUint64(d[0:], w0)
		binary.LittleEndian.PutUint64(d[8:], w1)
		binary.LittleEndian.PutUint64(d[16:], w2)
		binary.LittleEndian.PutUint64(d[24:], w3)
	}
	for ; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(dst[i:], binary.LittleEndian.Uint64(src[i:])^kw)
	}
	for ; i < n; i++ {
		dst[i] = src[i] ^ k[i&3]
	}
	return (pos + n) & 3
}

// decoder is the read side's frame state between reads.
type decoder struct {
	server    bool    // frames must be masked (client to server), else must not be
	remaining int64   // payload bytes left in the current data frame
	masked    bool    // the current data frame is masked
	key       [4]byte // its masking key
	keyPos    int     // position in key of the next payload byte
	inMessage bool    // a fragmented data message is open

	pend  [maxPend]byte // undecoded input: an incomplete header or control frame
	npend int
}

// control is called for each whole control frame, its payload unmasked
// (valid only during the call). It returns whether to stop decoding
// (a close frame), or a protocol error.
type controlFunc func(op opcode, payload []byte) (stop bool, err error)

// decode decodes the input in b in place: the payload bytes of data
// frames are unmasked and moved to the front of b, control frames go to
// ctl, and an incomplete header or control frame at the end is kept in
// d.pend for the next call (the caller puts it in front of its next
// input). It returns how many data bytes are at the front of b, and
// whether ctl stopped decoding, in which case the rest of b is dropped:
// nothing follows a close frame (RFC 6455, section 5.5.1).
func (d *decoder) decode(b []byte, ctl controlFunc) (n int, stop bool, err error) {
	r := 0
	for r < len(b) {
		if d.remaining > 0 {
			k := len(b) - r
			if int64(k) > d.remaining {
				k = int(d.remaining)
			}
			if d.masked {
				d.keyPos = maskCopy(b[n:], b[r:r+k], d.key, d.keyPos)
			} else if n != r {
				copy(b[n:], b[r:r+k])
			}
			n += k
			r += k
			d.remaining -= int64(k)
			continue
		}

		h := b[r:]
		if len(h) < 2 {
			break
		}
		hlen := 2
		switch h[1] &^ maskBit {
		case len16:
			hlen += 2
		case len64:
			hlen += 8
		}
		masked := h[1]&maskBit != 0
		if masked {
			hlen += 4
		}
		if len(h) < hlen {
			break
		}
		if h[0]&rsvBits != 0 {
			return n, false, protoErr("reserved bits set (no extension was negotiated)")
		}
		if masked != d.server {
			if d.server {
				return n, false, protoErr("unmasked frame from a client")
			}
			return n, false, protoErr("masked frame from a server")
		}
		var length uint64
		switch l := h[1] &^ maskBit; l {
		case len16:
			length = uint64(binary.BigEndian.Uint16(h[2:]))
		case len64:
			length = binary.BigEndian.Uint64(h[2:])
			if length>>63 != 0 {
				return n, false, protoErr("frame length with its most significant bit set")
			}
		default:
			length = uint64(l)
		}
		var key [4]byte
		if masked {
			copy(key[:], h[hlen-4:hlen])
		}
		fin := h[0]&finBit != 0
		op := opcode(h[0] & opMask)

		if op.control() {
			if op != opClose && op != opPing && op != opPong {
				return n, false, protoErr("reserved opcode %#x", byte(op))
			}
			if !fin {
				return n, false, protoErr("fragmented control frame")
			}
			if h[1]&^maskBit > maxControlPayload {
				// Its length fits the 7-bit field, and must be given there.
				return n, false, protoErr("control frame with an extended length (at most %d bytes)", maxControlPayload)
			}
			end := hlen + int(length)
			if len(h) < end {
				break // decoded once whole
			}
			p := h[hlen:end]
			if masked {
				maskCopy(p, p, key, 0)
			}
			stop, err := ctl(op, p)
			if err != nil || stop {
				return n, stop, err
			}
			r += end
			continue
		}

		switch op {
		case opContinuation:
			if !d.inMessage {
				return n, false, protoErr("continuation frame without a message to continue")
			}
		case opText, opBinary:
			if d.inMessage {
				return n, false, protoErr("new message before the fragmented one ended")
			}
		default:
			return n, false, protoErr("reserved opcode %#x", byte(op))
		}
		d.inMessage = !fin
		d.remaining = int64(length)
		d.masked = masked
		d.key = key
		d.keyPos = 0
		r += hlen
	}
	d.npend = copy(d.pend[:], b[r:])
	return n, false, nil
}

// parseClose reads a close frame's payload (RFC 6455, section 5.5.1):
// none (code 1005 reported), or a valid code and a UTF-8 reason.
func parseClose(p []byte) (*CloseError, error) {
	switch len(p) {
	case 0:
		return &CloseError{Code: closeNoStatus}, nil
	case 1:
		return nil, protoErr("close frame with a 1-byte payload")
	}
	code := int(binary.BigEndian.Uint16(p))
	if !validReceivedCloseCode(code) {
		return nil, protoErr("invalid close code %d", code)
	}
	if !utf8.Valid(p[2:]) {
		return nil, &protocolError{code: closeInvalidPayload, msg: "close reason is not UTF-8"}
	}
	return &CloseError{Code: code, Reason: string(p[2:])}, nil
}

// closePayload formats a close frame's payload: code and reason.
func closePayload(code int, reason string) []byte {
	b := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	copy(b[2:], reason)
	return b
}
