package vncclient

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"
)

// FuzzUpdate feeds any server stream, after the handshake, to a client
// with a 16×8 framebuffer: it must not panic, and its framebuffer stays
// within its bounds (a DesktopSize may resize it).
func FuzzUpdate(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(append([]byte{0, 0, 0, 2}, append(rect(0, 0, 0, 0, EncodingQEMUExtendedKeyEvent), rect(8, 0, 8, 8, EncodingCopyRect)...)...))
	f.Add(append([]byte{0, 0, 0, 1}, rect(0, 0, 4000, 4000, EncodingDesktopSize)...))
	f.Add(append([]byte{0, 0, 0, 1}, rect(0, 0, 0xffff, 0xffff, EncodingDesktopSize)...))
	f.Add(append([]byte{0, 0, 0, 1}, rect(15, 7, 2, 2, EncodingRaw)...))
	f.Add([]byte{3, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe, 1, 2})
	f.Add([]byte{1, 0, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 2, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, _ := net.Pipe()
		defer a.Close()
		// A small area bound keeps each input's DesktopSize cheap; the
		// bound is the same code as MaxPixels'.
		c := &Client{conn: a, r: bufio.NewReader(bytes.NewReader(data)), maxPixels: 1 << 16}
		// As Handshake leaves it: the pixel format it asks QEMU for (a
		// client without one decodes nothing; Hextile's colours divided
		// by its zero maxima — a harness bug the fuzzer found).
		if err := c.SetPixelFormat(defaultFormat); err != nil {
			t.Fatal(err)
		}
		if err := c.resize(16, 8); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 100; i++ {
			if _, err := c.ReadMessage(time.Time{}); err != nil {
				break
			}
		}
		if c.Width() > MaxDimension || c.Width()*c.Height() > 1<<16 || len(c.fb.Pix) != 4*c.Width()*c.Height() {
			t.Fatalf("framebuffer %dx%d, %d bytes", c.Width(), c.Height(), len(c.fb.Pix))
		}
	})
}
