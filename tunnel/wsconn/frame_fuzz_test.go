package wsconn

import (
	"bytes"
	"testing"
)

// decodeAll runs a decoder over input fed in pieces of at most step bytes
// (0: all at once), as readFrames feeds it: the pending input first, then
// the next piece. It returns the data, the control frames (opcode and
// payload) and whether decoding ended in an error or at a close frame.
func decodeAll(t *testing.T, server bool, input []byte, step int) (data []byte, ctl [][]byte, end string) {
	d := decoder{server: server}
	control := func(op opcode, p []byte) (bool, error) {
		ctl = append(ctl, append([]byte{byte(op)}, p...))
		if op == opClose {
			if _, err := parseClose(p); err != nil {
				return false, err
			}
			return true, nil
		}
		return false, nil
	}
	if step <= 0 {
		step = len(input)
	}
	for len(input) > 0 {
		n := min(step, len(input))
		b := make([]byte, d.npend+n)
		k := copy(b, d.pend[:d.npend])
		copy(b[k:], input[:n])
		input = input[n:]
		out, stop, err := d.decode(b, control)
		if out > len(b) {
			t.Fatalf("decoded %d bytes of data from %d of input", out, len(b))
		}
		if d.npend > maxPend {
			t.Fatalf("%d bytes pending, more than %d", d.npend, maxPend)
		}
		data = append(data, b[:out]...)
		switch {
		case err != nil:
			return data, ctl, "error"
		case stop:
			return data, ctl, "close"
		}
	}
	return data, ctl, "more"
}

// FuzzDecode: decoding never panics, keeps at most maxPend bytes between
// reads, never returns more data than it was given, and gives the same
// data, control frames and end whether the input comes at once or in
// pieces of any size (a read returns whatever the transport has).
func FuzzDecode(f *testing.F) {
	masked := func(op byte, payload string) []byte {
		b := make([]byte, maxHeader+len(payload))
		key := [4]byte{1, 2, 3, 4}
		h := frameHeader(b, opcode(op&opMask), len(payload), &key)
		b[0] = op
		maskCopy(b[h:], []byte(payload), key, 0)
		return b[:h+len(payload)]
	}
	cat := func(fs ...[]byte) []byte { return bytes.Join(fs, nil) }
	f.Add(cat(masked(0x82, "hello"), masked(0x81, "text")), true, uint8(1))
	f.Add(cat(masked(0x02, "frag"), masked(0x89, "ping"), masked(0x80, "ment")), true, uint8(3))
	f.Add(cat(masked(0x82, string(make([]byte, 300))), masked(0x88, "\x03\xe8bye"), masked(0x82, "after")), true, uint8(7))
	f.Add([]byte{0x82, 0x05, 'h', 'e', 'l', 'l', 'o', 0x8a, 0x00}, false, uint8(2))
	f.Add([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, true, uint8(1))
	f.Add(cat(masked(0x88, "\x03"), masked(0x82, "x")), true, uint8(0))
	f.Fuzz(func(t *testing.T, input []byte, server bool, step uint8) {
		data, ctl, end := decodeAll(t, server, input, 0)
		data2, ctl2, end2 := decodeAll(t, server, input, int(step)+1)
		if end != end2 || !bytes.Equal(data, data2) || len(ctl) != len(ctl2) {
			t.Fatalf("at once: %d bytes, %d control frames, %s; in pieces of %d: %d bytes, %d control frames, %s",
				len(data), len(ctl), end, int(step)+1, len(data2), len(ctl2), end2)
		}
		for i := range ctl {
			if !bytes.Equal(ctl[i], ctl2[i]) {
				t.Fatalf("control frame %d: % x at once, % x in pieces", i, ctl[i], ctl2[i])
			}
		}
	})
}
