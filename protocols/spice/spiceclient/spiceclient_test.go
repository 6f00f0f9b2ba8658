package spiceclient

import (
	"testing"

	"github.com/virtconsole/virtconsole/protocols/keymap"
)

// KeyCode builds spice-gtk's codes: make code, break bit, 0xe0 prefix in
// the low byte for extended keys.
func TestKeyCode(t *testing.T) {
	a, _ := keymap.Lookup("a")
	rctrl, _ := keymap.Lookup("rctrl")
	for _, tc := range []struct {
		k    keymap.Key
		up   bool
		want uint32
	}{{a, false, 0x1e}, {a, true, 0x9e}, {rctrl, false, 0x1de0}, {rctrl, true, 0x9de0}} {
		if got := KeyCode(tc.k.Qnum, tc.up); got != tc.want {
			t.Errorf("KeyCode(%s, %v) = %#x, want %#x", tc.k.Name, tc.up, got, tc.want)
		}
	}
}
