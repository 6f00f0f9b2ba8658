package consolestream

import (
	"encoding/binary"
	"errors"
	"fmt"

	libvirt "github.com/digitalocean/go-libvirt"
)

// xdrEncoder writes the few XDR shapes the console calls need.
type xdrEncoder struct{ b []byte }

func (e *xdrEncoder) uint32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *xdrEncoder) int32(v int32)   { e.uint32(uint32(v)) }

func (e *xdrEncoder) fixed(p []byte) {
	e.b = append(e.b, p...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *xdrEncoder) string(s string) {
	e.uint32(uint32(len(s)))
	e.fixed([]byte(s))
}

// optString is libvirt's remote_string: a present pointer, then the string.
func (e *xdrEncoder) optString(s string) {
	e.uint32(1)
	e.string(s)
}

// decodeInts decodes an XDR array of int32.
func decodeInts(b []byte) ([]int32, error) {
	if len(b) < 4 {
		return nil, errors.New("short reply")
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(len(b)) < 4+4*uint64(n) {
		return nil, errors.New("short reply")
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.BigEndian.Uint32(b[4+4*i:]))
	}
	return out, nil
}

// decodeError decodes a remote_error into a libvirt.Error (code and
// message; the rest is not needed).
func decodeError(b []byte) error {
	if len(b) < 12 {
		return errors.New("libvirt error (no details)")
	}
	code := binary.BigEndian.Uint32(b)
	msg := ""
	if binary.BigEndian.Uint32(b[8:]) == 1 && len(b) >= 16 {
		n := binary.BigEndian.Uint32(b[12:])
		if uint64(len(b)) >= 16+uint64(n) {
			msg = string(b[16 : 16+n])
		}
	}
	if msg == "" {
		msg = fmt.Sprintf("libvirt error %d", code)
	}
	return libvirt.Error{Code: code, Message: msg}
}
