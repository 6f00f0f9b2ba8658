package record

import (
	"bytes"
	"encoding/binary"
	"image"
	"strings"
	"testing"
	"time"
)

// rfbHead is a VNC recording's header line, the least a reader takes.
var rfbHead = []byte(`{"format":"virtconsole-rfb","version":1,"timestamp":0}` + "\n")

// rfbServerInit is an 8x4 ServerInit, 32 bpp true colour.
var rfbServerInit = []byte{0, 8, 0, 4, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 0}

// rfbRecord is one record of a VNC recording: direction, time in µs,
// data.
func rfbRecord(dir byte, us uint64, data ...byte) []byte {
	b := binary.BigEndian.AppendUint64([]byte{dir}, us)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// FuzzFrames feeds any file after a VNC recording's header to the
// exporter (RFBReader, the viewer's stream, the decoder): it must not
// panic.
func FuzzFrames(f *testing.F) {
	head, rec, si := rfbHead, rfbRecord, rfbServerInit
	f.Add(bytes.Join([][]byte{head, rec('C', 0, 1), rec('S', 10, si...), rec('C', 20, 0, 0, 0, 0, 16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0),
		rec('S', 200000, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0xf8, 0)}, nil))
	f.Add(bytes.Join([][]byte{head, rec('S', 10, si...), rec('M', 11, 'x'), rec('S', 900000, 2)}, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, head) || len(data) > 1<<16 {
			return
		}
		body := data[len(head):]
		// Keep each input's framebuffer small: ServerInit's size is
		// the decoder's to bound (MaxPixels), not this test's time.
		if i := bytes.IndexByte(body, 'S'); i >= 0 && len(body) >= i+17 && int(binary.BigEndian.Uint16(body[i+13:]))*int(binary.BigEndian.Uint16(body[i+15:])) > 1<<14 {
			return
		}
		rd, err := NewRFBReader(bytes.NewReader(data))
		if err != nil {
			return
		}
		n := 0
		Frames(rd, 10, 0, -1, func(time.Duration, *image.RGBA) error {
			if n++; n > 1000 {
				return errDone
			}
			return nil
		})
	})
}

// TestFramesBounded: a record stamped far in the future (a corrupt or
// forged recording) is refused with one line before any frame is made,
// not exported as days of frames.
func TestFramesBounded(t *testing.T) {
	head, rec, si := rfbHead, rfbRecord, rfbServerInit
	year := uint64(365 * 24 * time.Hour / time.Microsecond)
	data := bytes.Join([][]byte{head, rec('S', 10, si...), rec('S', year, 2)}, nil)
	rd, err := NewRFBReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	frames := 0
	err = Frames(rd, 10, 0, -1, func(time.Duration, *image.RGBA) error { frames++; return nil })
	if err == nil || !strings.Contains(err.Error(), "more than the 864000 an export makes") || frames > 1 {
		t.Fatalf("Frames of a record a year in: %d frames, %v", frames, err)
	}
}
