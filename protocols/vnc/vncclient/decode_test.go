package vncclient

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"image"
	"strings"
	"testing"
	"time"
)

// serverInit is a ServerInit for w×h in pixel format pf (16 bytes).
func serverInit(w, h uint16, pf []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, w)
	b = binary.BigEndian.AppendUint16(b, h)
	b = append(b, pf...)
	return binary.BigEndian.AppendUint32(b, 1)
}

var (
	// 16 bpp big-endian RGB565.
	pf565 = []byte{16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0}
	// 32 bpp little-endian, red at 16: QEMU's default (ZRLE CPIXELs of
	// 3 bytes: B, G, R).
	pf888 = []byte{32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
)

func px565(r, g, b uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, r<<11|g<<5|b)
}

func at(img *image.RGBA, x, y int) [3]byte {
	o := img.PixOffset(x, y)
	return [3]byte{img.Pix[o], img.Pix[o+1], img.Pix[o+2]}
}

// replayed replays the recorded server stream s (ServerInit, then n
// messages) and returns the screen.
func replayed(t *testing.T, s []byte, n int) *image.RGBA {
	t.Helper()
	c, err := Replay(bytes.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := c.ReadMessage(time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	return c.Image()
}

// TestReplayHextile: a 20×4 Hextile rectangle in RGB565 (two tiles: one
// raw, one with a background, a foreground subrectangle and a coloured
// one) decodes to the colours it says.
func TestReplayHextile(t *testing.T) {
	s := append(serverInit(20, 4, pf565), 'Q')
	s = append(s, 0, 0, 0, 1)
	s = append(s, rect(0, 0, 20, 4, EncodingHextile)...)
	// Tile 1 (16×4): raw, all red.
	s = append(s, hextileRaw)
	for i := 0; i < 16*4; i++ {
		s = append(s, px565(31, 0, 0)...)
	}
	// Tile 2 (4×4): background blue, foreground green, 2 subrects: the
	// foreground at (0,0) 2×1, a white one at (3,3) 1×1.
	s = append(s, hextileBackground|hextileForeground|hextileAnySubrects)
	s = append(s, px565(0, 0, 31)...)
	s = append(s, px565(0, 63, 0)...)
	s = append(s, 1, 0x00, 0x10) // one, not coloured: x,y 0,0; w-1=1, h-1=0
	// Subrects are either all coloured or not: a second update for the white one.
	s = append(s, 0, 0, 0, 1)
	s = append(s, rect(16, 0, 4, 4, EncodingHextile)...)
	s = append(s, hextileAnySubrects|hextileSubrectsColoured|hextileBackground)
	s = append(s, px565(0, 0, 31)...)
	s = append(s, 2)
	s = append(s, px565(0, 63, 0)...)
	s = append(s, 0x00, 0x10)
	s = append(s, px565(31, 63, 31)...)
	s = append(s, 0x33, 0x00)
	img := replayed(t, s, 2)
	for _, tc := range []struct {
		x, y int
		want [3]byte
	}{{0, 0, [3]byte{255, 0, 0}}, {15, 3, [3]byte{255, 0, 0}}, {16, 0, [3]byte{0, 255, 0}}, {17, 0, [3]byte{0, 255, 0}},
		{18, 0, [3]byte{0, 0, 255}}, {16, 1, [3]byte{0, 0, 255}}, {19, 3, [3]byte{255, 255, 255}}} {
		if got := at(img, tc.x, tc.y); got != tc.want {
			t.Errorf("(%d,%d) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}

// TestReplayZRLE: two ZRLE rectangles on one zlib stream (each ended by
// a sync flush, as QEMU sends them), with solid, raw, packed-palette,
// plain RLE and palette RLE tiles, decode to the colours they say.
func TestReplayZRLE(t *testing.T) {
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	rectData := func(tiles []byte) []byte {
		start := z.Len()
		zw.Write(tiles)
		zw.Flush()
		data := z.Bytes()[start:]
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(data))), data...)
	}
	red, green, blue := []byte{0, 0, 255}, []byte{0, 255, 0}, []byte{255, 0, 0} // CPIXELs: B, G, R
	s := append(serverInit(72, 64, pf888), 'Q')
	// Rectangle 1: 72×64 = a 64×64 tile (solid red) and an 8×64 one
	// (raw: green).
	var tiles []byte
	tiles = append(append(tiles, 1), red...)
	tiles = append(tiles, 0)
	for i := 0; i < 8*64; i++ {
		tiles = append(tiles, green...)
	}
	s = append(s, 0, 0, 0, 1)
	s = append(append(s, rect(0, 0, 72, 64, EncodingZRLE)...), rectData(tiles)...)
	// Rectangle 2, 4×2 at (0,0): packed palette of 2 (blue, green),
	// rows 0b1000.... and 0b0100....; then 3 more rects: plain RLE,
	// palette RLE.
	tiles = append([]byte{2}, blue...)
	tiles = append(tiles, green...)
	tiles = append(tiles, 0x80, 0x40)
	s = append(s, 0, 0, 0, 3)
	s = append(append(s, rect(0, 0, 4, 2, EncodingZRLE)...), rectData(tiles)...)
	// Plain RLE 4×1 at (0,2): 3 blue, 1 red.
	tiles = append(append([]byte{128}, blue...), 2)
	tiles = append(append(tiles, red...), 0)
	s = append(append(s, rect(0, 2, 4, 1, EncodingZRLE)...), rectData(tiles)...)
	// Palette RLE 4×1 at (0,3): palette (green, red); green once, red
	// run of 3.
	tiles = append(append([]byte{130}, green...), red...)
	tiles = append(tiles, 0, 0x81, 2)
	s = append(append(s, rect(0, 3, 4, 1, EncodingZRLE)...), rectData(tiles)...)
	img := replayed(t, s, 2)
	R, G, B := [3]byte{255, 0, 0}, [3]byte{0, 255, 0}, [3]byte{0, 0, 255}
	for _, tc := range []struct {
		x, y int
		want [3]byte
	}{{63, 63, R}, {10, 10, R}, {64, 0, G}, {71, 63, G}, {0, 0, G}, {1, 0, B}, {1, 1, G}, {0, 1, B}, {3, 1, B},
		{0, 2, B}, {2, 2, B}, {3, 2, R}, {0, 3, G}, {1, 3, R}, {3, 3, R}, {4, 3, R}} {
		if got := at(img, tc.x, tc.y); got != tc.want {
			t.Errorf("(%d,%d) = %v, want %v", tc.x, tc.y, got, tc.want)
		}
	}
}

// TestDecodes: the steering's set.
func TestDecodes(t *testing.T) {
	for _, e := range []int32{0, 1, 5, 16, -223, -239, -240, -257, -258, -261, -250, -30} {
		if !Decodes(e) {
			t.Errorf("Decodes(%d) = false", e)
		}
	}
	for _, e := range []int32{7, 6, 15, 21, -308, -259, -312, -313, -224} {
		if Decodes(e) {
			t.Errorf("Decodes(%d) = true", e)
		}
	}
}

// FuzzReplay feeds any recorded server stream (ServerInit, then
// messages) to Replay: it must not panic.
func FuzzReplay(f *testing.F) {
	f.Add(append(append(serverInit(16, 8, pf888), 'Q', 0, 0, 0, 1), rect(0, 0, 16, 8, EncodingHextile)...))
	f.Add(append(append(serverInit(16, 8, pf565), 'Q', 0, 0, 0, 1), append(rect(0, 0, 4, 4, EncodingHextile), 14, 1, 2, 3, 4, 1, 0x11)...))
	f.Add(append(append(serverInit(8, 8, pf888), 'Q', 0, 0, 0, 1), append(rect(0, 0, 8, 8, EncodingZRLE), 0, 0, 0, 2, 0x78, 0x9c)...))
	f.Add(append(append(serverInit(8, 8, pf888), 'Q', 0, 0, 0, 1), rect(0, 0, 8, 8, EncodingCursor)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= 4 && int(binary.BigEndian.Uint16(data))*int(binary.BigEndian.Uint16(data[2:])) > 1<<16 {
			return // keep each input's framebuffer cheap
		}
		c, err := Replay(bytes.NewReader(data))
		if err != nil {
			return
		}
		c.maxPixels = 1 << 16
		for i := 0; i < 100; i++ {
			if _, err := c.ReadMessage(time.Time{}); err != nil {
				break
			}
		}
	})
}

// TestPixelFormatRefused: a colour-map format, or 24 bits per pixel, is
// refused with a clear error.
func TestPixelFormatRefused(t *testing.T) {
	c, err := Replay(bytes.NewReader(append(serverInit(4, 4, pf888), 'Q')))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pf   []byte
		want string
	}{
		{[]byte{8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "colour-map"},
		{[]byte{24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}, "24 bits per pixel"},
	} {
		if err := c.SetPixelFormat(ParsePixelFormat(tc.pf)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.pf, err, tc.want)
		}
	}
}

// TestReplayZRLEPixelFormats: ZRLE's CPIXEL in other pixel formats: two
// bytes in RGB565, three (the most significant) in a 32-bit big-endian
// format with red at 24.
func TestReplayZRLEPixelFormats(t *testing.T) {
	pfHigh := []byte{32, 24, 1, 1, 0, 255, 0, 255, 0, 255, 24, 16, 8, 0, 0, 0}
	for _, tc := range []struct {
		name string
		pf   []byte
		cpix []byte // a solid tile's colour
		want [3]byte
	}{
		{"RGB565", pf565, px565(31, 0, 31), [3]byte{255, 0, 255}},
		{"32-bit, red at 24", pfHigh, []byte{0x10, 0x20, 0x30}, [3]byte{0x10, 0x20, 0x30}},
	} {
		var z bytes.Buffer
		zw := zlib.NewWriter(&z)
		zw.Write(append([]byte{1}, tc.cpix...))
		zw.Flush()
		s := append(serverInit(3, 3, tc.pf), 'Q', 0, 0, 0, 1)
		s = append(append(s, rect(0, 0, 3, 3, EncodingZRLE)...), binary.BigEndian.AppendUint32(nil, uint32(z.Len()))...)
		img := replayed(t, append(s, z.Bytes()...), 1)
		if got := at(img, 2, 2); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
