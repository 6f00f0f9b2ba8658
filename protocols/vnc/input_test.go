package vnc

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

// clientMessages is a ClientInit asking for exclusive access, then one of
// each client message the filter knows, input ones marked.
func clientMessages() (all, viewOnly []byte) {
	var msgs []struct {
		b     []byte
		input bool
	}
	add := func(input bool, b ...byte) {
		msgs = append(msgs, struct {
			b     []byte
			input bool
		}{b, input})
	}
	add(false, 0) // ClientInit, shared-flag 0
	add(false, append([]byte{byte(MsgSetPixelFormat), 0, 0, 0}, bytes.Repeat([]byte{7}, 16)...)...)
	add(false, byte(MsgSetEncodings), 0, 0, 2, 0, 0, 0, 0, 0xff, 0xff, 0xfe, 0xfc)
	add(false, byte(MsgFramebufferUpdateRequest), 1, 0, 0, 0, 0, 2, 0, 1, 0x80)
	add(true, byte(MsgKeyEvent), 1, 0, 0, 0, 0, 0, 0x61)
	add(true, byte(MsgPointerEvent), 1, 0, 10, 0, 20)
	add(true, append([]byte{byte(MsgClientCutText), 0, 0, 0, 0, 0, 0, 5}, "hello"...)...)
	neg := binary.BigEndian.AppendUint32([]byte{byte(MsgClientCutText), 0, 0, 0}, uint32(0xffffffff-3)) // -4: extended clipboard
	add(true, append(neg, 1, 2, 3, 4)...)
	add(true, byte(MsgQEMU), qemuExtendedKeyEvent, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e)
	add(false, byte(MsgQEMU), qemuAudio, 0, 0)
	add(false, byte(MsgQEMU), qemuAudio, 0, 2, 3, 2, 0, 0, 0xac, 0x44)
	add(false, byte(MsgClientFence), 0, 0, 0, 0, 0, 0, 1, 2, 9, 9)
	add(false, append([]byte{byte(MsgSetDesktopSize), 0, 4, 0, 3, 0, 1, 0}, append(bytes.Repeat([]byte{1}, 15), 2)...)...)
	add(false, byte(MsgXVP), 0, 1, 2)
	for i, m := range msgs {
		all = append(all, m.b...)
		if i == 0 {
			viewOnly = append(viewOnly, 1) // shared
			continue
		}
		if !m.input {
			viewOnly = append(viewOnly, m.b...)
		}
	}
	return all, viewOnly
}

// TestInput: whatever the viewer sends comes out with the ClientInit
// shared-flag set; view-only drops exactly the input messages, however
// the bytes are split across reads.
func TestInput(t *testing.T) {
	all, wantView := clientMessages()
	wantControl := append([]byte{1}, all[1:]...)
	for _, tc := range []struct {
		name     string
		viewOnly bool
		want     []byte
	}{{"control", false, wantControl}, {"view", true, wantView}} {
		for _, chunk := range []int{1, 3, 7, len(all)} {
			v, p := nettest.TCPPair(t)
			go func() {
				for b := all; len(b) > 0; b = b[min(chunk, len(b)):] {
					v.Write(b[:min(chunk, len(b))])
					time.Sleep(time.Millisecond)
				}
				v.Close()
			}()
			c := Input(p, tc.viewOnly)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("%s, %d-byte writes: got % x, %v\nwant % x", tc.name, chunk, got, err, tc.want)
			}
		}
	}
}

// TestInputUnknownMessage: a view-only viewer's message the filter cannot
// size ends the connection instead of passing.
func TestInputUnknownMessage(t *testing.T) {
	v, p := nettest.TCPPair(t)
	v.Write([]byte{1, 200, 0, 0, 0})
	c := Input(p, true)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err == nil || !bytes.Equal(got, []byte{1}) {
		t.Fatalf("got % x, %v; want the ClientInit, then an error", got, err)
	}
}

// setEncodings is a SetEncodings message listing encs.
func setEncodings(encs ...int32) []byte {
	b := binary.BigEndian.AppendUint16([]byte{byte(MsgSetEncodings), 0}, uint16(len(encs)))
	for _, e := range encs {
		b = binary.BigEndian.AppendUint32(b, uint32(e))
	}
	return b
}

// TestInputSteer: with Encodings, every SetEncodings reaches QEMU with
// only the allowed encodings, in the viewer's order, whatever its length
// (one longer than the filter's buffer too) and however the bytes are
// split; the other messages pass unchanged, input too.
func TestInputSteer(t *testing.T) {
	allow := func(e int32) bool { return e == 0 || e == 16 || e == -223 }
	many := make([]int32, 3000) // 12 KiB: more than the 4 KiB buffer
	for i := range many {
		many[i] = int32(i % 20)
	}
	fbur := []byte{byte(MsgFramebufferUpdateRequest), 1, 0, 0, 0, 0, 2, 0, 1, 0x80}
	key := []byte{byte(MsgKeyEvent), 1, 0, 0, 0, 0, 0, 0x61}
	var in, want []byte
	in = append(append(in, 0), setEncodings(7, 16, 0, -223, -258, 5)...)
	want = append(append(want, 1), setEncodings(16, 0, -223)...)
	in, want = append(in, fbur...), append(want, fbur...)
	in = append(in, setEncodings(many...)...)
	kept := make([]int32, 0, 300)
	for _, e := range many {
		if allow(e) {
			kept = append(kept, e)
		}
	}
	want = append(want, setEncodings(kept...)...)
	in, want = append(in, key...), append(want, key...)
	in, want = append(in, setEncodings(7)...), append(want, setEncodings()...)
	for _, chunk := range []int{1, 5, 4096, len(in)} {
		v, p := nettest.TCPPair(t)
		go func() {
			for b := in; len(b) > 0; b = b[min(chunk, len(b)):] {
				v.Write(b[:min(chunk, len(b))])
			}
			v.Close()
		}()
		c := newInput(p, false, allow)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%d-byte writes: got %d bytes, %v; want %d bytes (% x…)", chunk, len(got), err, len(want), want[:min(40, len(want))])
		}
	}
}
