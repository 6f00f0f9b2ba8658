// Package vncclient is an RFB viewer for scripts: it takes a screenshot
// (framebuffer updates in Raw and CopyRect, RFC 6143 §7.7; Hextile and
// ZRLE too, in any true-colour pixel format: decode.go, which also
// replays recorded sessions, Replay) and presses
// keys (KeyEvent, RFC 6143 §7.5.4, or QEMU's extended key events with
// scancodes when the server acknowledges them, rfbproto "QEMU Extended
// Key Event Message"). It speaks to a viewer-side connection: the proxy's
// or virtconsole's own, which offer security type None (the leg toward
// QEMU is authenticated elsewhere). Its ClientInit always asks for a
// shared session, so a viewer already on the console stays connected.
//
// Memory is bounded: a framebuffer of at most MaxDimension pixels a side
// and one row of scratch, allocated when the size is known (ServerInit,
// DesktopSize) and never per message or rectangle. Every read and write
// honours the conn's deadline (SetDeadline).
package vncclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"io"
	"net"
	"strings"
	"time"
	"unicode"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/keymap"
)

var be = binary.BigEndian

// Encoding is an RFB encoding type (RFC 6143 §7.7, §7.8; IANA "RFB
// Encoding Types"), signed on the wire.
type Encoding int32

// The encodings this viewer asks for.
const (
	EncodingRaw      Encoding = 0 // RFC 6143 §7.7.1
	EncodingCopyRect Encoding = 1 // RFC 6143 §7.7.2
	// EncodingDesktopSize is a pseudo-encoding: the framebuffer changed
	// size (RFC 6143 §7.8.2).
	EncodingDesktopSize Encoding = -223
	// EncodingQEMUExtendedKeyEvent is a pseudo-encoding: the server
	// accepts QEMU extended key events (rfbproto "QEMU Extended Key
	// Event Pseudo-encoding"); QEMU acknowledges it with a rectangle of
	// this encoding and no data.
	EncodingQEMUExtendedKeyEvent Encoding = -258
)

// ServerMessageType is the first byte of a server-to-client message
// (RFC 6143 §7.6).
type ServerMessageType uint8

// Server messages.
const (
	MsgFramebufferUpdate   ServerMessageType = 0 // §7.6.1
	MsgSetColourMapEntries ServerMessageType = 1 // §7.6.2
	MsgBell                ServerMessageType = 2 // §7.6.3
	MsgServerCutText       ServerMessageType = 3 // §7.6.4
)

// Client message types this viewer sends (RFC 6143 §7.5; 255 from
// rfbproto "QEMU Client Message").
const (
	msgSetPixelFormat           = 0
	msgSetEncodings             = 2
	msgFramebufferUpdateRequest = 3
	msgKeyEvent                 = 4
	msgQEMU                     = 255
	qemuExtendedKeyEvent        = 0 // sub-type of msgQEMU
)

// Protocol limits this viewer holds the server to.
const (
	// MaxDimension bounds the framebuffer's width and height.
	MaxDimension = 16384
	// MaxPixels bounds its area: 64 Mi pixels (256 MiB), above 8K UHD's
	// 33 Mi.
	MaxPixels = 64 << 20
	// maxName bounds ServerInit's desktop name.
	maxName = 1 << 16
	// maxReason bounds a failure reason.
	maxReason = 4096
)

// Security types and results (RFC 6143 §7.1.2, §7.1.3).
const (
	securityInvalid = 0
	securityNone    = 1
)

// Options are what a viewer asks the server for.
type Options struct {
	// ExtendedKeyEvents asks for QEMU's extended key events, which carry
	// scancodes (Client.ExtendedKeyEvents says whether the server took
	// them once an update has been read).
	ExtendedKeyEvents bool
	// Encodings, when not empty, are asked for instead of CopyRect, Raw
	// and DesktopSize, in this order of preference (a test of the
	// proxy's steering asks for Tight, which this viewer does not
	// decode: a Tight rectangle is then an error).
	Encodings []Encoding
}

// Client is an RFB viewer on one connection. Its methods are for one
// goroutine.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	// Name is the desktop name of ServerInit.
	Name string
	// ExtendedKeyEvents is true once the server acknowledged QEMU's
	// extended key events; KeyEvent then sends scancodes.
	ExtendedKeyEvents bool

	fb        *image.RGBA
	maxPixels int    // MaxPixels; less in tests
	row       []byte // scratch: one row of Raw pixels

	// The pixel format (SetPixelFormat): bpp bytes a pixel, cbpp a ZRLE
	// CPIXEL (shifted left by cshift bits to a pixel value).
	pf                PixelFormat
	bpp, cbpp, cshift int
	// ZRLE's one zlib stream (§7.7.6): the compressed bytes not inflated
	// yet, and the inflater, made at the first ZRLE rectangle.
	zin      bytes.Buffer
	zr       io.ReadCloser
	palette  [127][4]byte // a ZRLE tile's palette
	wbuf     [12]byte     // scratch: one outgoing message
	deadline time.Time
	// covered counts the pixels updated since the last full request;
	// updates counts framebuffer updates read.
	covered int64
	updates int
	rects   map[Encoding]int // rectangles read, by encoding
}

// Handshake runs a viewer's side of RFB on conn up to ServerInit,
// accepting only security type None, with ClientInit's shared-flag set,
// then sets a 32-bit true-colour pixel format and asks for Raw, CopyRect
// and DesktopSize (and QEMU's extended key events if o says so). It
// honours ctx; afterwards the conn's deadline is the caller's
// (SetDeadline). Errors are one line.
func Handshake(ctx context.Context, conn net.Conn, o Options) (*Client, error) {
	defer protocols.Deadline(ctx, conn)()
	c := &Client{conn: conn, r: bufio.NewReaderSize(conn, 16<<10)}
	c.SetPixelFormat(defaultFormat)
	if err := c.handshake(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("vnc: handshake: %w", ctx.Err())
		}
		return nil, err
	}
	encs := []Encoding{EncodingCopyRect, EncodingRaw, EncodingDesktopSize}
	if len(o.Encodings) > 0 {
		encs = o.Encodings
	}
	if o.ExtendedKeyEvents {
		encs = append(encs, EncodingQEMUExtendedKeyEvent)
	}
	msg := make([]byte, 0, 20+4+4*len(encs))
	// SetPixelFormat (§7.5.1): 3 padding bytes, PIXEL_FORMAT (§7.4):
	// 32 bpp, depth 24, little-endian, true colour, maxima 255, shifts
	// red 16, green 8, blue 0, 3 padding bytes. A pixel is then B, G,
	// R, X on the wire.
	msg = append(msg, msgSetPixelFormat, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0)
	// SetEncodings (§7.5.2): padding, u16 count, s32 each.
	msg = append(msg, msgSetEncodings, 0)
	msg = be.AppendUint16(msg, uint16(len(encs)))
	for _, e := range encs {
		msg = be.AppendUint32(msg, uint32(e))
	}
	if _, err := conn.Write(msg); err != nil {
		return nil, ioError(err, "sending the pixel format and encodings")
	}
	return c, nil
}

func (c *Client) handshake() error {
	var v [12]byte
	if err := c.read(v[:], "the server's RFB version"); err != nil {
		return err
	}
	if string(v[:4]) != "RFB " || v[7] != '.' || v[11] != '\n' {
		return fmt.Errorf("vnc: the server sent %q, not an RFB version; is it a VNC server?", v[:])
	}
	minor := string(v[8:11])
	switch {
	case string(v[4:7]) == "003" && minor >= "008", string(v[4:7]) > "003":
		minor = "008"
	case minor == "007":
	default:
		minor = "003"
	}
	if _, err := c.conn.Write([]byte("RFB 003." + minor + "\n")); err != nil {
		return ioError(err, "sending our RFB version")
	}
	if minor == "003" {
		// 3.3: the server decides, a u32 security type.
		t, err := c.u32("the security type")
		if err != nil {
			return err
		}
		switch t {
		case securityNone:
		case securityInvalid:
			return c.refused()
		default:
			return fmt.Errorf("vnc: the server wants security type %d; only None is spoken here (connect through the proxy or virtconsole)", t)
		}
	} else {
		n, err := c.u8("the number of security types")
		if err != nil {
			return err
		}
		if n == 0 {
			return c.refused()
		}
		types := make([]byte, n)
		if err := c.read(types, "the security types"); err != nil {
			return err
		}
		if !strings.ContainsRune(string(types), securityNone) {
			return fmt.Errorf("vnc: the server offers security types %v, not None (connect through the proxy or virtconsole)", types)
		}
		if _, err := c.conn.Write([]byte{securityNone}); err != nil {
			return ioError(err, "choosing security type None")
		}
		if minor == "008" {
			res, err := c.u32("the security result")
			if err != nil {
				return err
			}
			if res != 0 {
				return c.refused()
			}
		}
	}
	// ClientInit (§7.3.1): shared-flag 1, always.
	if _, err := c.conn.Write([]byte{1}); err != nil {
		return ioError(err, "sending ClientInit")
	}
	var si [24]byte // ServerInit (§7.3.2) up to the name
	if err := c.read(si[:], "ServerInit"); err != nil {
		return err
	}
	nameLen := be.Uint32(si[20:])
	if nameLen > maxName {
		return fmt.Errorf("vnc: ServerInit's desktop name is %d bytes long", nameLen)
	}
	name := make([]byte, nameLen)
	if err := c.read(name, "the desktop name"); err != nil {
		return err
	}
	c.Name = clean(string(name))
	return c.resize(int(be.Uint16(si[0:])), int(be.Uint16(si[2:])))
}

// refused reads a failure reason (§7.1.2) and returns it as the error.
func (c *Client) refused() error {
	n, err := c.u32("the failure reason's length")
	if err != nil {
		return err
	}
	b := make([]byte, min(n, maxReason))
	if err := c.read(b, "the failure reason"); err != nil {
		return err
	}
	return &protocols.HandshakeError{Op: "vnc: the server refused the connection", Reason: clean(string(b))}
}

// resize makes a black framebuffer of w×h.
func (c *Client) resize(w, h int) error {
	limit := c.maxPixels
	if limit == 0 {
		limit = MaxPixels
	}
	if w <= 0 || h <= 0 || w > MaxDimension || h > MaxDimension || w*h > limit {
		return fmt.Errorf("vnc: the server's framebuffer is %dx%d; at most %dx%d and %d pixels are accepted", w, h, MaxDimension, MaxDimension, limit)
	}
	c.fb = image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 3; i < len(c.fb.Pix); i += 4 {
		c.fb.Pix[i] = 0xff
	}
	c.row = make([]byte, 4*w)
	c.covered = 0
	return nil
}

// Image is the framebuffer as updated so far. It is the Client's own:
// it changes with the next update (and is replaced on a resize).
func (c *Client) Image() *image.RGBA { return c.fb }

// Width and Height are the framebuffer's size.
func (c *Client) Width() int  { return c.fb.Rect.Dx() }
func (c *Client) Height() int { return c.fb.Rect.Dy() }

// SetDeadline sets the conn's deadline for everything that follows
// (ReadMessage's wait aside).
func (c *Client) SetDeadline(t time.Time) error {
	c.deadline = t
	return c.conn.SetDeadline(t)
}

// RequestUpdate sends a FramebufferUpdateRequest (§7.5.3) for the whole
// framebuffer. A full (non-incremental) request is answered with every
// pixel; an incremental one with what changes, when it changes.
func (c *Client) RequestUpdate(incremental bool) error {
	b := c.wbuf[:10]
	b[0], b[1] = msgFramebufferUpdateRequest, 0
	if incremental {
		b[1] = 1
	}
	be.PutUint32(b[2:], 0)
	be.PutUint16(b[6:], uint16(c.Width()))
	be.PutUint16(b[8:], uint16(c.Height()))
	if !incremental {
		c.covered = 0
	}
	if _, err := c.conn.Write(b); err != nil {
		return ioError(err, "requesting a framebuffer update")
	}
	return nil
}

// Capture asks for the whole framebuffer and reads updates until every
// pixel has come (Image is then the screen).
func (c *Client) Capture() error {
	if err := c.RequestUpdate(false); err != nil {
		return err
	}
	for {
		before := c.fb
		t, err := c.ReadMessage(time.Time{})
		if err != nil {
			return err
		}
		if c.fb != before {
			// Resized: ask again for the new framebuffer.
			if err := c.RequestUpdate(false); err != nil {
				return err
			}
			continue
		}
		if t == MsgFramebufferUpdate && c.covered >= int64(c.Width())*int64(c.Height()) {
			return nil
		}
	}
}

// Next asks for an incremental update and reads messages until one
// comes. When none has begun by wait (if not zero), it returns an error
// that errors.Is os.ErrDeadlineExceeded, and the connection stays usable.
func (c *Client) Next(wait time.Time) error {
	if err := c.RequestUpdate(true); err != nil {
		return err
	}
	for {
		t, err := c.ReadMessage(wait)
		if err != nil || t == MsgFramebufferUpdate {
			return err
		}
	}
}

// Rects counts the rectangles read so far by encoding (pseudo-encodings
// too).
func (c *Client) Rects() map[Encoding]int {
	m := make(map[Encoding]int, len(c.rects))
	for e, n := range c.rects {
		m[e] = n
	}
	return m
}

// Updates counts the framebuffer updates read so far.
func (c *Client) Updates() int { return c.updates }

// ReadMessage reads one server message and applies it: a framebuffer
// update to Image, a DesktopSize to its size, QEMU's extended key event
// acknowledgement to ExtendedKeyEvents; the others are read and dropped.
// When wait is not zero and before the deadline, no message beginning by
// then is an error that errors.Is os.ErrDeadlineExceeded, with nothing
// consumed.
func (c *Client) ReadMessage(wait time.Time) (ServerMessageType, error) {
	if !wait.IsZero() && (c.deadline.IsZero() || wait.Before(c.deadline)) {
		c.conn.SetReadDeadline(wait)
		_, err := c.r.Peek(1)
		c.conn.SetReadDeadline(c.deadline)
		if err != nil {
			return 0, ioError(err, "waiting for a server message")
		}
	}
	t, err := c.u8("a server message")
	if err != nil {
		return 0, err
	}
	switch ServerMessageType(t) {
	case MsgFramebufferUpdate:
		return MsgFramebufferUpdate, c.update()
	case MsgSetColourMapEntries:
		var h [5]byte // padding, u16 first-colour, u16 number-of-colours
		if err := c.read(h[:], "SetColourMapEntries"); err != nil {
			return 0, err
		}
		return MsgSetColourMapEntries, c.discard(6*int64(be.Uint16(h[3:])), "SetColourMapEntries")
	case MsgBell:
		return MsgBell, nil
	case MsgServerCutText:
		var h [7]byte // 3 padding bytes, u32 length
		if err := c.read(h[:], "ServerCutText"); err != nil {
			return 0, err
		}
		// A negative length is rfbproto's extended clipboard: its
		// absolute value.
		n := int64(int32(be.Uint32(h[3:])))
		return MsgServerCutText, c.discard(max(n, -n), "ServerCutText")
	}
	return 0, fmt.Errorf("vnc: the server sent message type %d, which was not asked for", t)
}

// update reads the rest of a FramebufferUpdate (§7.6.1).
func (c *Client) update() error {
	var h [3]byte // padding, u16 number-of-rectangles
	if err := c.read(h[:], "a framebuffer update"); err != nil {
		return err
	}
	var rh [12]byte // x, y, width, height, s32 encoding
	for i, n := 0, int(be.Uint16(h[1:])); i < n; i++ {
		if err := c.read(rh[:], "a rectangle header"); err != nil {
			return err
		}
		var r image.Rectangle
		r.Min = image.Pt(int(be.Uint16(rh[0:])), int(be.Uint16(rh[2:])))
		r.Max = r.Min.Add(image.Pt(int(be.Uint16(rh[4:])), int(be.Uint16(rh[6:]))))
		enc := Encoding(be.Uint32(rh[8:]))
		if c.rects == nil {
			c.rects = map[Encoding]int{}
		}
		c.rects[enc]++
		switch enc {
		case EncodingRaw:
			if err := c.inside(r, enc); err != nil {
				return err
			}
			if err := c.raw(r); err != nil {
				return err
			}
		case EncodingCopyRect:
			if err := c.inside(r, enc); err != nil {
				return err
			}
			var src [4]byte
			if err := c.read(src[:], "a CopyRect source"); err != nil {
				return err
			}
			from := r.Sub(r.Min).Add(image.Pt(int(be.Uint16(src[0:])), int(be.Uint16(src[2:]))))
			if err := c.inside(from, enc); err != nil {
				return err
			}
			c.copyRect(r, from.Min)
		case EncodingHextile, EncodingZRLE:
			if err := c.inside(r, enc); err != nil {
				return err
			}
			if r.Empty() {
				continue
			}
			decode := c.hextile
			if enc == EncodingZRLE {
				decode = c.zrle
			}
			if err := decode(r); err != nil {
				return err
			}
		case EncodingDesktopSize:
			if err := c.resize(r.Dx(), r.Dy()); err != nil {
				return err
			}
			continue
		case EncodingQEMUExtendedKeyEvent:
			c.ExtendedKeyEvents = true
			continue
		case EncodingCursor, EncodingXCursor:
			if err := c.discard(c.cursorData(r, enc), "a cursor shape"); err != nil {
				return err
			}
			continue
		case EncodingQEMULEDState:
			if err := c.discard(1, "a LED state"); err != nil {
				return err
			}
			continue
		case EncodingPointerTypeChange:
			continue
		default:
			return fmt.Errorf("vnc: the server sent a rectangle in encoding %d, which was not asked for", enc)
		}
		c.covered += int64(r.Dx()) * int64(r.Dy())
	}
	c.updates++
	return nil
}

// inside refuses a rectangle that is not within the framebuffer.
func (c *Client) inside(r image.Rectangle, enc Encoding) error {
	if !r.In(c.fb.Rect) && !r.Empty() {
		return fmt.Errorf("vnc: the server sent a rectangle %v (encoding %d) outside its %dx%d framebuffer", r, enc, c.Width(), c.Height())
	}
	return nil
}

// raw reads a Raw rectangle (§7.7.1) row by row into the framebuffer.
func (c *Client) raw(r image.Rectangle) error {
	if r.Empty() {
		return nil // no pixels, wherever it is
	}
	if c.pf != defaultFormat {
		return c.pixels(c.r, r, false)
	}
	// The pixel format Handshake sets: B, G, R, X on the wire.
	n := 4 * r.Dx()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := c.row[:n]
		if err := c.read(row, "Raw pixels"); err != nil {
			return err
		}
		dst := c.fb.Pix[c.fb.PixOffset(r.Min.X, y):][:n]
		for i := 0; i < n; i += 4 {
			dst[i], dst[i+1], dst[i+2], dst[i+3] = row[i+2], row[i+1], row[i], 0xff
		}
	}
	return nil
}

// copyRect copies the framebuffer's rectangle at from to r (§7.7.2),
// which may overlap.
func (c *Client) copyRect(r image.Rectangle, from image.Point) {
	if r.Empty() {
		return
	}
	n := 4 * r.Dx()
	rows := r.Dy()
	copyRow := func(i int) {
		copy(c.fb.Pix[c.fb.PixOffset(r.Min.X, r.Min.Y+i):][:n], c.fb.Pix[c.fb.PixOffset(from.X, from.Y+i):][:n])
	}
	if from.Y < r.Min.Y {
		for i := rows - 1; i >= 0; i-- {
			copyRow(i)
		}
		return
	}
	for i := 0; i < rows; i++ {
		copyRow(i)
	}
}

// KeyEvent presses (down) or releases a key: a QEMU extended key event
// with its scancode when the server acknowledged them, else an RFB
// KeyEvent with its keysym.
func (c *Client) KeyEvent(k keymap.Key, down bool) error {
	var b []byte
	if c.ExtendedKeyEvents {
		// rfbproto "QEMU Extended Key Event Message": u8 255, u8 0,
		// u16 down-flag, u32 keysym, u32 keycode (qnum).
		b = c.wbuf[:12]
		b[0], b[1], b[2], b[3] = msgQEMU, qemuExtendedKeyEvent, 0, 0
		if down {
			b[3] = 1
		}
		be.PutUint32(b[4:], uint32(k.Keysym))
		be.PutUint32(b[8:], uint32(k.Qnum))
	} else {
		// §7.5.4: u8 4, u8 down-flag, 2 padding bytes, u32 keysym.
		b = c.wbuf[:8]
		b[0], b[1], b[2], b[3] = msgKeyEvent, 0, 0, 0
		if down {
			b[1] = 1
		}
		be.PutUint32(b[4:], uint32(k.Keysym))
	}
	if _, err := c.conn.Write(b); err != nil {
		return ioError(err, "sending a key event")
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) read(b []byte, what string) error {
	if _, err := io.ReadFull(c.r, b); err != nil {
		return ioError(err, "reading "+what)
	}
	return nil
}

func (c *Client) discard(n int64, what string) error {
	for n > 0 {
		k := int(min(n, 1<<20))
		if _, err := c.r.Discard(k); err != nil {
			return ioError(err, "reading "+what)
		}
		n -= int64(k)
	}
	return nil
}

func (c *Client) u8(what string) (uint8, error) {
	b, err := c.r.ReadByte()
	if err != nil {
		return 0, ioError(err, "reading "+what)
	}
	return b, nil
}

func (c *Client) u32(what string) (uint32, error) {
	var b [4]byte
	if err := c.read(b[:], what); err != nil {
		return 0, err
	}
	return be.Uint32(b[:]), nil
}

// ioError names the step that failed, on one line; the cause stays in
// the chain (os.ErrDeadlineExceeded, io.EOF).
func ioError(err error, step string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("vnc: %s: the server closed the connection: %w", step, err)
	}
	return fmt.Errorf("vnc: %s: %w", step, err)
}

// clean makes a server's string printable on one line.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}
