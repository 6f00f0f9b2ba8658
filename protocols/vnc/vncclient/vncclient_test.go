package vncclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image/color"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/keymap"
)

// fakeServer plays an RFB 3.8 server offering None on the far end of a
// pipe: it checks ClientInit's shared-flag, sends ServerInit for w×h,
// reads the pixel format and encodings, then writes script and copies
// what the client sends next to got. done yields the script's outcome,
// and is closed once the client has closed and got is complete.
func fakeServer(t *testing.T, w, h uint16, script []byte) (*Client, *bytes.Buffer, chan error) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	got := &bytes.Buffer{}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		copied := make(chan struct{})
		done <- func() error {
			b.Write([]byte("RFB 003.008\n"))
			v := make([]byte, 12)
			if _, err := io.ReadFull(b, v); err != nil || string(v) != "RFB 003.008\n" {
				return errors.New("version")
			}
			b.Write([]byte{2, 2, 1}) // VNC auth, None
			sel := make([]byte, 1)
			io.ReadFull(b, sel)
			if sel[0] != 1 {
				return errors.New("security type not None")
			}
			b.Write([]byte{0, 0, 0, 0})
			ci := make([]byte, 1)
			io.ReadFull(b, ci)
			if ci[0] != 1 {
				return errors.New("ClientInit not shared")
			}
			si := binary.BigEndian.AppendUint16(nil, w)
			si = binary.BigEndian.AppendUint16(si, h)
			si = append(si, make([]byte, 16)...)
			si = binary.BigEndian.AppendUint32(si, 4)
			b.Write(append(si, "QEMU"...))
			pf := make([]byte, 20+4+4*4)
			if _, err := io.ReadFull(b, pf); err != nil {
				return err
			}
			if pf[0] != 0 || pf[4] != 32 || pf[7] != 1 || pf[20] != 2 || pf[23] != 4 {
				return errors.New("pixel format or encodings")
			}
			go func() { io.Copy(got, b); close(copied) }()
			_, err := b.Write(script)
			return err
		}()
		select {
		case <-copied:
		case <-time.After(10 * time.Second):
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Handshake(ctx, a, Options{ExtendedKeyEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	return c, got, done
}

func rect(x, y, w, h uint16, enc Encoding) []byte {
	b := binary.BigEndian.AppendUint16(nil, x)
	b = binary.BigEndian.AppendUint16(b, y)
	b = binary.BigEndian.AppendUint16(b, w)
	b = binary.BigEndian.AppendUint16(b, h)
	return binary.BigEndian.AppendUint32(b, uint32(enc))
}

func TestCaptureRawCopyRectAndKeys(t *testing.T) {
	// 4×2: one update with the extended key ack, a Raw rectangle of the
	// left 2×2 (red, green / blue, white), a Raw of the right 2×2 (black),
	// then a second update copying the left half onto the right.
	var s []byte
	s = append(s, 0, 0, 0, 3)
	s = append(s, rect(0, 0, 0, 0, EncodingQEMUExtendedKeyEvent)...)
	s = append(s, rect(0, 0, 2, 2, EncodingRaw)...)
	s = append(s, 0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0)
	s = append(s, rect(2, 0, 2, 2, EncodingRaw)...)
	s = append(s, make([]byte, 16)...)
	s = append(s, 2)          // Bell
	s = append(s, 3, 0, 0, 0) // ServerCutText "hi"
	s = append(s, 0, 0, 0, 2, 'h', 'i')
	s = append(s, 0, 0, 0, 1)
	s = append(s, rect(2, 0, 2, 2, EncodingCopyRect)...)
	s = append(s, 0, 0, 0, 0)
	c, got, done := fakeServer(t, 4, 2, s)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := c.Capture(); err != nil {
		t.Fatal(err)
	}
	if !c.ExtendedKeyEvents {
		t.Error("the extended key event acknowledgement was not seen")
	}
	img := c.Image()
	want := []color.RGBA{{255, 0, 0, 255}, {0, 255, 0, 255}, {0, 0, 0, 255}, {0, 0, 0, 255},
		{0, 0, 255, 255}, {255, 255, 255, 255}, {0, 0, 0, 255}, {0, 0, 0, 255}}
	for i, w := range want {
		if g := img.RGBAAt(i%4, i/4); g != w {
			t.Errorf("pixel %d,%d = %v, want %v", i%4, i/4, g, w)
		}
	}
	if err := c.Next(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if l, r := img.RGBAAt(i%2, i/4), img.RGBAAt(2+i%2, i/4); l != r {
			t.Errorf("CopyRect: %v != %v", l, r)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nothing more comes: Next times out and the conn stays usable.
	err := c.Next(time.Now().Add(50 * time.Millisecond))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Next with nothing coming: %v", err)
	}
	k, _ := keymap.Lookup("rctrl")
	if err := c.KeyEvent(k, true); err != nil {
		t.Fatal(err)
	}
	c.ExtendedKeyEvents = false
	if err := c.KeyEvent(k, false); err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-done // the copy has ended
	wantOut := []byte{3, 0, 0, 0, 0, 0, 0, 4, 0, 2, 3, 1, 0, 0, 0, 0, 0, 4, 0, 2, 3, 1, 0, 0, 0, 0, 0, 4, 0, 2}
	wantOut = append(wantOut, 255, 0, 0, 1, 0, 0, 0xff, 0xe4, 0, 0, 0, 0x9d)
	wantOut = append(wantOut, 4, 0, 0, 0, 0, 0, 0xff, 0xe4)
	if !bytes.Equal(got.Bytes(), wantOut) {
		t.Errorf("client sent\n%v\nwant\n%v", got.Bytes(), wantOut)
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		script     []byte
	}{
		{"too big", "framebuffer is 20000x2", nil},
		{"too many pixels", "framebuffer is 16000x16000", nil},
		{"outside", "outside its 4x2 framebuffer", append([]byte{0, 0, 0, 1}, rect(3, 0, 2, 1, EncodingRaw)...)},
		{"copy from outside", "outside its 4x2", append(append([]byte{0, 0, 0, 1}, rect(0, 0, 2, 1, EncodingCopyRect)...), 0, 3, 0, 0)},
		{"unknown encoding", "encoding 7", append([]byte{0, 0, 0, 1}, rect(0, 0, 1, 1, 7)...)},
		{"unknown message", "message type 9", []byte{9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.script == nil {
				a, b := net.Pipe()
				defer a.Close()
				go func() {
					b.Write([]byte("RFB 003.008\n"))
					io.ReadFull(b, make([]byte, 12))
					b.Write([]byte{1, 1})
					io.ReadFull(b, make([]byte, 1))
					b.Write([]byte{0, 0, 0, 0})
					io.ReadFull(b, make([]byte, 1))
					size := []byte{0x4e, 0x20, 0, 2} // 20000x2
					if tc.name == "too many pixels" {
						size = []byte{0x3e, 0x80, 0x3e, 0x80} // 16000x16000
					}
					b.Write(size)
					b.Write(make([]byte, 20))
					b.Close()
				}()
				_, err := Handshake(context.Background(), a, Options{})
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
				return
			}
			c, _, _ := fakeServer(t, 4, 2, tc.script)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			err := c.Capture()
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v, want one line with %q", err, tc.want)
			}
		})
	}
}

func TestServerRefusesWithReason(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		b.Write([]byte("RFB 003.008\n"))
		io.ReadFull(b, make([]byte, 12))
		b.Write(append([]byte{0, 0, 0, 0, 10}, "no\nconsole"...))
		b.Close()
	}()
	_, err := Handshake(context.Background(), a, Options{})
	if err == nil || err.Error() != "vnc: the server refused the connection: no console" {
		t.Fatalf("got %v", err)
	}
}
