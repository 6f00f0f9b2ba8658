package vncclient

import (
	"bufio"
	"compress/zlib"
	"errors"
	"fmt"
	"image"
	"io"
)

// More encodings a recording's exporter decodes (Replay): the proxy
// steers a recorded viewer to these (Decodes).
const (
	EncodingHextile Encoding = 5  // RFC 6143 §7.7.4
	EncodingZRLE    Encoding = 16 // RFC 6143 §7.7.6
	// EncodingTight (rfbproto "Tight Encoding") is not decoded.
	EncodingTight Encoding = 7
	// EncodingCursor and EncodingXCursor carry the pointer's shape (RFC
	// 6143 §7.8.1; rfbproto "X Cursor Pseudo-encoding"): read and
	// dropped, since a recording shows the framebuffer.
	EncodingCursor  Encoding = -239
	EncodingXCursor Encoding = -240
	// EncodingPointerTypeChange (rfbproto "QEMU Pointer Motion Change
	// Pseudo-encoding"): a rectangle without data.
	EncodingPointerTypeChange Encoding = -257
	// EncodingQEMULEDState (rfbproto "QEMU LED State Pseudo-encoding"):
	// one byte of data.
	EncodingQEMULEDState Encoding = -261
	// The compression level (-256 to -247) and JPEG quality (-32 to -23)
	// pseudo-encodings are hints the server never answers with a
	// rectangle (rfbproto "Compression Level", "JPEG Quality Level").
	encodingCompressLevel0 Encoding = -256
	encodingCompressLevel9 Encoding = -247
	encodingQualityLevel0  Encoding = -32
	encodingQualityLevel9  Encoding = -23
)

// Decodes reports whether this package decodes encoding e, or e is a
// pseudo-encoding whose rectangles it reads (or that has none): Raw,
// CopyRect, Hextile, ZRLE, DesktopSize, Cursor, XCursor, QEMU's pointer
// type change, extended key event and LED state, and the compression and
// quality hints. Tight, TRLE, zlib, Extended DesktopSize, audio, fences,
// continuous updates and the others are not. The proxy lets a recorded
// viewer ask QEMU only for these, so that every recording decodes.
func Decodes(e int32) bool {
	switch enc := Encoding(e); {
	case enc == EncodingRaw, enc == EncodingCopyRect, enc == EncodingHextile, enc == EncodingZRLE,
		enc == EncodingDesktopSize, enc == EncodingCursor, enc == EncodingXCursor, enc == EncodingPointerTypeChange,
		enc == EncodingQEMUExtendedKeyEvent, enc == EncodingQEMULEDState:
		return true
	case enc >= encodingCompressLevel0 && enc <= encodingCompressLevel9, enc >= encodingQualityLevel0 && enc <= encodingQualityLevel9:
		return true
	}
	return false
}

// PixelFormat is an RFB PIXEL_FORMAT (RFC 6143 §7.4).
type PixelFormat struct {
	BitsPerPixel uint8  `json:"bits_per_pixel"`
	Depth        uint8  `json:"depth"`
	BigEndian    bool   `json:"big_endian"`
	TrueColour   bool   `json:"true_colour"`
	RedMax       uint16 `json:"red_max"`
	GreenMax     uint16 `json:"green_max"`
	BlueMax      uint16 `json:"blue_max"`
	RedShift     uint8  `json:"red_shift"`
	GreenShift   uint8  `json:"green_shift"`
	BlueShift    uint8  `json:"blue_shift"`
}

// ParsePixelFormat reads a PIXEL_FORMAT's 16 bytes.
func ParsePixelFormat(b []byte) PixelFormat {
	return PixelFormat{BitsPerPixel: b[0], Depth: b[1], BigEndian: b[2] != 0, TrueColour: b[3] != 0,
		RedMax: be.Uint16(b[4:]), GreenMax: be.Uint16(b[6:]), BlueMax: be.Uint16(b[8:]),
		RedShift: b[10], GreenShift: b[11], BlueShift: b[12]}
}

// check refuses a pixel format this package does not decode: colour
// maps, and sizes other than 8, 16 and 32 bits.
func (pf PixelFormat) check() error {
	if !pf.TrueColour {
		return errors.New("vnc: the viewer set a colour-map pixel format, which is not decoded (only true colour is)")
	}
	switch pf.BitsPerPixel {
	case 8, 16, 32:
	default:
		return fmt.Errorf("vnc: a pixel format of %d bits per pixel is not decoded (8, 16 and 32 are)", pf.BitsPerPixel)
	}
	if pf.RedMax == 0 || pf.GreenMax == 0 || pf.BlueMax == 0 {
		return errors.New("vnc: a true-colour pixel format with a zero colour maximum is not decoded")
	}
	return nil
}

// defaultFormat is what Handshake sets: 32 bpp, depth 24, little-endian,
// red at 16, green at 8, blue at 0 (B, G, R, X on the wire).
var defaultFormat = PixelFormat{BitsPerPixel: 32, Depth: 24, TrueColour: true, RedMax: 255, GreenMax: 255, BlueMax: 255, RedShift: 16, GreenShift: 8}

// SetPixelFormat makes the client decode what follows in pf: what a
// viewer's SetPixelFormat (RFC 6143 §7.5.1) asked for.
func (c *Client) SetPixelFormat(pf PixelFormat) error {
	if err := pf.check(); err != nil {
		return err
	}
	c.pf, c.bpp = pf, int(pf.BitsPerPixel)/8
	c.cbpp = c.bpp
	c.cshift = 0
	if pf.BitsPerPixel == 32 && pf.Depth <= 24 {
		// ZRLE's CPIXEL (§7.7.5): 3 bytes when every colour fits in
		// the 3 least (or most) significant bytes.
		mask := uint32(pf.RedMax)<<pf.RedShift | uint32(pf.GreenMax)<<pf.GreenShift | uint32(pf.BlueMax)<<pf.BlueShift
		switch {
		case mask&0xff000000 == 0:
			c.cbpp = 3
		case mask&0xff == 0:
			c.cbpp, c.cshift = 3, 8
		}
	}
	return nil
}

// Replay makes a client that decodes a recorded server stream: r holds
// ServerInit (RFC 6143 §7.3.2), then the server's messages, which
// ReadMessage decodes; the viewer's SetPixelFormat goes to
// SetPixelFormat. It sends nothing.
func Replay(r io.Reader) (*Client, error) {
	c := &Client{r: bufio.NewReaderSize(r, 16<<10)}
	var si [24]byte
	if err := c.read(si[:], "ServerInit"); err != nil {
		return nil, err
	}
	if err := c.SetPixelFormat(ParsePixelFormat(si[4:20])); err != nil {
		return nil, err
	}
	nameLen := be.Uint32(si[20:])
	if nameLen > maxName {
		return nil, fmt.Errorf("vnc: ServerInit's desktop name is %d bytes long", nameLen)
	}
	name := make([]byte, nameLen)
	if err := c.read(name, "the desktop name"); err != nil {
		return nil, err
	}
	c.Name = clean(string(name))
	return c, c.resize(int(be.Uint16(si[0:])), int(be.Uint16(si[2:])))
}

// colour converts a pixel value to opaque RGBA bytes.
func (c *Client) colour(v uint32) [4]byte {
	pf := &c.pf
	ch := func(max uint16, shift uint8) byte {
		return byte((v >> shift & uint32(max)) * 255 / uint32(max))
	}
	return [4]byte{ch(pf.RedMax, pf.RedShift), ch(pf.GreenMax, pf.GreenShift), ch(pf.BlueMax, pf.BlueShift), 0xff}
}

// pixel is the value of the pixel of c.bpp bytes at b.
func (c *Client) pixel(b []byte) uint32 {
	switch c.bpp {
	case 1:
		return uint32(b[0])
	case 2:
		if c.pf.BigEndian {
			return uint32(be.Uint16(b))
		}
		return uint32(b[0]) | uint32(b[1])<<8
	}
	if c.pf.BigEndian {
		return be.Uint32(b)
	}
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// cpixel is the value of ZRLE's CPIXEL at b (c.cbpp bytes).
func (c *Client) cpixel(b []byte) uint32 {
	if c.cbpp != 3 {
		return c.pixel(b)
	}
	var v uint32
	if c.pf.BigEndian {
		v = uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	} else {
		v = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
	}
	return v << c.cshift
}

// fill paints r (within the framebuffer) with col.
func (c *Client) fill(r image.Rectangle, col [4]byte) {
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := c.fb.Pix[c.fb.PixOffset(r.Min.X, y):][:4*r.Dx()]
		for i := 0; i < len(row); i += 4 {
			copy(row[i:i+4], col[:])
		}
	}
}

// pixels reads r's pixels (Raw order, c.bpp bytes each, or CPIXELs with
// cpix) from rd into the framebuffer, row by row.
func (c *Client) pixels(rd io.Reader, r image.Rectangle, cpix bool) error {
	size, conv := c.bpp, c.pixel
	if cpix {
		size, conv = c.cbpp, c.cpixel
	}
	n := size * r.Dx()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		row := c.row[:n]
		if _, err := io.ReadFull(rd, row); err != nil {
			return ioError(err, "reading pixels")
		}
		dst := c.fb.Pix[c.fb.PixOffset(r.Min.X, y):][:4*r.Dx()]
		for i, o := 0, 0; i < n; i, o = i+size, o+4 {
			col := c.colour(conv(row[i:]))
			copy(dst[o:o+4], col[:])
		}
	}
	return nil
}

// Hextile sub-encoding bits (RFC 6143 §7.7.4).
const (
	hextileRaw              = 1
	hextileBackground       = 2
	hextileForeground       = 4
	hextileAnySubrects      = 8
	hextileSubrectsColoured = 16
)

// hextile reads a Hextile rectangle (§7.7.4): 16×16 tiles, left to
// right, top to bottom.
func (c *Client) hextile(r image.Rectangle) error {
	var bg, fg [4]byte
	var pix [4]byte
	for ty := r.Min.Y; ty < r.Max.Y; ty += 16 {
		for tx := r.Min.X; tx < r.Max.X; tx += 16 {
			tile := image.Rect(tx, ty, min(tx+16, r.Max.X), min(ty+16, r.Max.Y))
			sub, err := c.u8("a Hextile sub-encoding")
			if err != nil {
				return err
			}
			if sub&hextileRaw != 0 {
				if err := c.pixels(c.r, tile, false); err != nil {
					return err
				}
				continue
			}
			if sub&hextileBackground != 0 {
				if err := c.read(pix[:c.bpp], "a Hextile background"); err != nil {
					return err
				}
				bg = c.colour(c.pixel(pix[:]))
			}
			if sub&hextileForeground != 0 {
				if err := c.read(pix[:c.bpp], "a Hextile foreground"); err != nil {
					return err
				}
				fg = c.colour(c.pixel(pix[:]))
			}
			c.fill(tile, bg)
			if sub&hextileAnySubrects == 0 {
				continue
			}
			n, err := c.u8("a Hextile subrectangle count")
			if err != nil {
				return err
			}
			for i := 0; i < int(n); i++ {
				col := fg
				if sub&hextileSubrectsColoured != 0 {
					if err := c.read(pix[:c.bpp], "a Hextile subrectangle colour"); err != nil {
						return err
					}
					col = c.colour(c.pixel(pix[:]))
				}
				var xy [2]byte
				if err := c.read(xy[:], "a Hextile subrectangle"); err != nil {
					return err
				}
				x, y := tx+int(xy[0]>>4), ty+int(xy[0]&15)
				s := image.Rect(x, y, x+int(xy[1]>>4)+1, y+int(xy[1]&15)+1).Intersect(tile)
				c.fill(s, col)
			}
		}
	}
	return nil
}

// maxZRLE bounds one ZRLE rectangle's compressed data.
const maxZRLE = 64 << 20

// zrle reads a ZRLE rectangle (§7.7.6): u32 length, then zlib data that
// continues one stream over the connection's rectangles, of 64×64 tiles.
func (c *Client) zrle(r image.Rectangle) error {
	n, err := c.u32("a ZRLE length")
	if err != nil {
		return err
	}
	if n > maxZRLE {
		return fmt.Errorf("vnc: a ZRLE rectangle of %d bytes; at most %d are accepted", n, maxZRLE)
	}
	// The compressed bytes go to the one stream's input: what the
	// inflater leaves (up to a sync flush) it reads with the next.
	if _, err := io.CopyN(&c.zin, c.r, int64(n)); err != nil {
		return ioError(err, "reading ZRLE data")
	}
	if c.zr == nil {
		if c.zr, err = zlib.NewReader(&c.zin); err != nil {
			return fmt.Errorf("vnc: ZRLE data is not a zlib stream: %w", err)
		}
	}
	for ty := r.Min.Y; ty < r.Max.Y; ty += 64 {
		for tx := r.Min.X; tx < r.Max.X; tx += 64 {
			tile := image.Rect(tx, ty, min(tx+64, r.Max.X), min(ty+64, r.Max.Y))
			if err := c.zrleTile(tile); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return errors.New("vnc: a ZRLE rectangle's data ended inside a tile")
				}
				return err
			}
		}
	}
	return nil
}

func (c *Client) zrleTile(tile image.Rectangle) error {
	zr := c.zr
	var b [1]byte
	if _, err := io.ReadFull(zr, b[:]); err != nil {
		return err
	}
	sub := int(b[0])
	switch {
	case sub == 0: // raw CPIXELs
		return c.pixels(zr, tile, true)
	case sub == 1: // solid
		var p [4]byte
		if _, err := io.ReadFull(zr, p[:c.cbpp]); err != nil {
			return err
		}
		c.fill(tile, c.colour(c.cpixel(p[:])))
		return nil
	case sub >= 2 && sub <= 16, sub >= 130:
		size := sub
		if sub >= 130 {
			size = sub - 128
		}
		pal := c.palette[:size]
		var p [4]byte
		for i := range pal {
			if _, err := io.ReadFull(zr, p[:c.cbpp]); err != nil {
				return err
			}
			pal[i] = c.colour(c.cpixel(p[:]))
		}
		if sub <= 16 {
			return c.packed(tile, pal)
		}
		return c.rle(tile, pal)
	case sub == 128:
		return c.rle(tile, nil)
	}
	return fmt.Errorf("vnc: ZRLE tile sub-encoding %d is not defined", sub)
}

// packed reads a packed-palette tile: indices of 1, 2 or 4 bits, each
// row padded to a byte.
func (c *Client) packed(tile image.Rectangle, pal [][4]byte) error {
	bits := 4
	switch {
	case len(pal) == 2:
		bits = 1
	case len(pal) <= 4:
		bits = 2
	}
	w := tile.Dx()
	row := c.row[:(w*bits+7)/8]
	for y := tile.Min.Y; y < tile.Max.Y; y++ {
		if _, err := io.ReadFull(c.zr, row); err != nil {
			return err
		}
		dst := c.fb.Pix[c.fb.PixOffset(tile.Min.X, y):]
		for x := 0; x < w; x++ {
			bit := x * bits
			i := int(row[bit/8]>>(8-bits-bit%8)) & (1<<bits - 1)
			if i >= len(pal) {
				return fmt.Errorf("vnc: a ZRLE palette index %d beyond its %d colours", i, len(pal))
			}
			copy(dst[4*x:4*x+4], pal[i][:])
		}
	}
	return nil
}

// rle reads a run-length tile: plain (pal nil: CPIXEL and length) or
// with a palette (an index, with a length when its top bit is set).
func (c *Client) rle(tile image.Rectangle, pal [][4]byte) error {
	w, total := tile.Dx(), tile.Dx()*tile.Dy()
	var p [4]byte
	for i := 0; i < total; {
		var col [4]byte
		run := 1
		if pal == nil {
			if _, err := io.ReadFull(c.zr, p[:c.cbpp]); err != nil {
				return err
			}
			col = c.colour(c.cpixel(p[:]))
			n, err := c.runLength()
			if err != nil {
				return err
			}
			run = n
		} else {
			if _, err := io.ReadFull(c.zr, p[:1]); err != nil {
				return err
			}
			idx := int(p[0] & 127)
			if idx >= len(pal) {
				return fmt.Errorf("vnc: a ZRLE palette index %d beyond its %d colours", idx, len(pal))
			}
			col = pal[idx]
			if p[0]&128 != 0 {
				n, err := c.runLength()
				if err != nil {
					return err
				}
				run = n
			}
		}
		if run > total-i {
			return errors.New("vnc: a ZRLE run goes beyond its tile")
		}
		for ; run > 0; run, i = run-1, i+1 {
			o := c.fb.PixOffset(tile.Min.X+i%w, tile.Min.Y+i/w)
			copy(c.fb.Pix[o:o+4], col[:])
		}
	}
	return nil
}

// runLength reads a ZRLE run length: bytes of 255 and a last one below,
// summed, plus one.
func (c *Client) runLength() (int, error) {
	n := 1
	var b [1]byte
	for {
		if _, err := io.ReadFull(c.zr, b[:]); err != nil {
			return 0, err
		}
		n += int(b[0])
		if b[0] != 255 {
			return n, nil
		}
		if n > 64*64 {
			return 0, errors.New("vnc: a ZRLE run goes beyond its tile")
		}
	}
}

// cursorData is the length of a Cursor (bpp bytes a pixel, then a
// bitmask) or XCursor (two colours, then two bitmasks) rectangle's data.
func (c *Client) cursorData(r image.Rectangle, enc Encoding) int64 {
	w, h := int64(r.Dx()), int64(r.Dy())
	mask := (w + 7) / 8 * h
	if enc == EncodingCursor {
		return w*h*int64(c.bpp) + mask
	}
	if w*h == 0 {
		return 0
	}
	return 6 + 2*mask
}
