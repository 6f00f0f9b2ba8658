// Package keymap names the keys of a PC keyboard for the commands that
// press them (virtconsole keys, virtconsole type): each key's X keysym,
// which RFB KeyEvents carry (RFC 6143 §7.5.4; X11 keysymdef.h), and its
// XT scancode in QEMU's "qnum" numbering, which QEMU's extended key
// events carry (rfbproto "QEMU Extended Key Event Message") and from
// which the SPICE inputs channel's scancodes follow. Runes map to keys
// as on a US keyboard.
package keymap

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Keysym is an X keysym (X11 keysymdef.h). Printable ASCII is its own.
type Keysym uint32

// Qnum is a key's XT make scancode as QEMU numbers it (ui/input-keymap,
// the "qnum" column of keymaps.csv): a one-byte code as is, a code sent
// with the 0xe0 prefix as 0x80|code (Right Ctrl, e0 1d, is 0x9d).
type Qnum uint16

// Extended reports whether the key is sent with the 0xe0 prefix.
func (q Qnum) Extended() bool { return q&0x80 != 0 }

// Code is the make code after any 0xe0 prefix.
func (q Qnum) Code() uint8 { return uint8(q & 0x7f) }

// Key is one key of the keyboard.
type Key struct {
	Name   string // canonical name, as Lookup accepts it
	Keysym Keysym
	Qnum   Qnum
}

// Keysyms of the keys that are not printable ASCII (keysymdef.h).
const (
	XKBackSpace  Keysym = 0xff08
	XKTab        Keysym = 0xff09
	XKReturn     Keysym = 0xff0d
	XKPause      Keysym = 0xff13
	XKScrollLock Keysym = 0xff14
	XKSysReq     Keysym = 0xff15
	XKEscape     Keysym = 0xff1b
	XKHome       Keysym = 0xff50
	XKLeft       Keysym = 0xff51
	XKUp         Keysym = 0xff52
	XKRight      Keysym = 0xff53
	XKDown       Keysym = 0xff54
	XKPageUp     Keysym = 0xff55
	XKPageDown   Keysym = 0xff56
	XKEnd        Keysym = 0xff57
	XKPrint      Keysym = 0xff61
	XKInsert     Keysym = 0xff63
	XKMenu       Keysym = 0xff67
	XKNumLock    Keysym = 0xff7f
	XKF1         Keysym = 0xffbe // F2..F12 follow
	XKShiftL     Keysym = 0xffe1
	XKShiftR     Keysym = 0xffe2
	XKControlL   Keysym = 0xffe3
	XKControlR   Keysym = 0xffe4
	XKCapsLock   Keysym = 0xffe5
	XKAltL       Keysym = 0xffe9
	XKAltR       Keysym = 0xffea
	XKSuperL     Keysym = 0xffeb
	XKSuperR     Keysym = 0xffec
	XKDelete     Keysym = 0xffff
)

// Scancodes of keys used by name in this package.
const (
	QnumLeftShift Qnum = 0x2a
	QnumEnter     Qnum = 0x1c
	QnumTab       Qnum = 0x0f
	QnumSpace     Qnum = 0x39
)

// named are the keys with names, aliases after the canonical name.
var named = []struct {
	names  []string
	keysym Keysym
	qnum   Qnum
}{
	{[]string{"ctrl", "control", "lctrl"}, XKControlL, 0x1d},
	{[]string{"rctrl"}, XKControlR, 0x9d},
	{[]string{"shift", "lshift"}, XKShiftL, QnumLeftShift},
	{[]string{"rshift"}, XKShiftR, 0x36},
	{[]string{"alt", "lalt"}, XKAltL, 0x38},
	{[]string{"altgr", "ralt"}, XKAltR, 0xb8},
	{[]string{"super", "meta", "win", "lsuper"}, XKSuperL, 0xdb},
	{[]string{"rsuper"}, XKSuperR, 0xdc},
	{[]string{"menu"}, XKMenu, 0xdd},
	{[]string{"enter", "return"}, XKReturn, QnumEnter},
	{[]string{"esc", "escape"}, XKEscape, 0x01},
	{[]string{"backspace"}, XKBackSpace, 0x0e},
	{[]string{"tab"}, XKTab, QnumTab},
	{[]string{"space"}, ' ', QnumSpace},
	{[]string{"capslock"}, XKCapsLock, 0x3a},
	{[]string{"numlock"}, XKNumLock, 0x45},
	{[]string{"scrolllock"}, XKScrollLock, 0x46},
	{[]string{"print", "printscreen"}, XKPrint, 0xb7},
	{[]string{"sysrq"}, XKSysReq, 0x54},
	{[]string{"pause"}, XKPause, 0xc6},
	{[]string{"insert", "ins"}, XKInsert, 0xd2},
	{[]string{"delete", "del"}, XKDelete, 0xd3},
	{[]string{"home"}, XKHome, 0xc7},
	{[]string{"end"}, XKEnd, 0xcf},
	{[]string{"pageup", "pgup"}, XKPageUp, 0xc9},
	{[]string{"pagedown", "pgdn"}, XKPageDown, 0xd1},
	{[]string{"up"}, XKUp, 0xc8},
	{[]string{"down"}, XKDown, 0xd0},
	{[]string{"left"}, XKLeft, 0xcb},
	{[]string{"right"}, XKRight, 0xcd},
	{[]string{"minus"}, '-', 0x0c},
	{[]string{"equal"}, '=', 0x0d},
	{[]string{"bracketleft"}, '[', 0x1a},
	{[]string{"bracketright"}, ']', 0x1b},
	{[]string{"semicolon"}, ';', 0x27},
	{[]string{"apostrophe"}, '\'', 0x28},
	{[]string{"grave"}, '`', 0x29},
	{[]string{"backslash"}, '\\', 0x2b},
	{[]string{"comma"}, ',', 0x33},
	{[]string{"period", "dot"}, '.', 0x34},
	{[]string{"slash"}, '/', 0x35},
}

// usRows are the US keyboard's character keys: each row's first
// scancode, its characters unshifted and shifted.
var usRows = []struct {
	first          Qnum
	plain, shifted string
}{
	{0x02, "1234567890-=", "!@#$%^&*()_+"},
	{0x10, "qwertyuiop[]", "QWERTYUIOP{}"},
	{0x1e, "asdfghjkl;'`", "ASDFGHJKL:\"~"},
	{0x2b, `\zxcvbnm,./`, "|ZXCVBNM<>?"},
}

// fKeyQnum are F1..F12's scancodes.
var fKeyQnum = [12]Qnum{0x3b, 0x3c, 0x3d, 0x3e, 0x3f, 0x40, 0x41, 0x42, 0x43, 0x44, 0x57, 0x58}

type runeKey struct {
	key   Key
	shift bool
}

var (
	byName = map[string]Key{}
	names  []string // canonical names, sorted
	byRune = map[rune]runeKey{}
)

func init() {
	add := func(k Key, aliases ...string) {
		byName[k.Name] = k
		for _, a := range aliases {
			byName[a] = k
		}
		names = append(names, k.Name)
	}
	for _, n := range named {
		add(Key{Name: n.names[0], Keysym: n.keysym, Qnum: n.qnum}, n.names[1:]...)
	}
	for i, q := range fKeyQnum {
		add(Key{Name: fmt.Sprintf("f%d", i+1), Keysym: XKF1 + Keysym(i), Qnum: q})
	}
	for _, row := range usRows {
		plain, shifted := []rune(row.plain), []rune(row.shifted)
		for i, r := range plain {
			k := Key{Name: string(r), Keysym: Keysym(r), Qnum: row.first + Qnum(i)}
			if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
				add(k)
			} else if _, ok := byName[string(r)]; !ok && r != '-' {
				byName[string(r)] = lookupSym(Keysym(r)) // "ctrl-]" works; the name is "bracketright"
			}
			byRune[r] = runeKey{key: k}
			s := k
			s.Keysym = Keysym(shifted[i])
			byRune[shifted[i]] = runeKey{key: s, shift: true}
		}
	}
	space := byName["space"]
	byRune[' '] = runeKey{key: space}
	byRune['\n'] = runeKey{key: byName["enter"]}
	byRune['\t'] = runeKey{key: byName["tab"]}
	sort.Strings(names)
}

func lookupSym(s Keysym) Key {
	for _, n := range named {
		if n.keysym == s {
			return Key{Name: n.names[0], Keysym: n.keysym, Qnum: n.qnum}
		}
	}
	panic(fmt.Sprintf("keymap: no named key for keysym %#x", s))
}

// Lookup returns the key named name (case-insensitive): a canonical
// name, an alias, a letter, a digit or an unshifted punctuation character
// other than '-' (which is "minus").
func Lookup(name string) (Key, bool) {
	k, ok := byName[strings.ToLower(name)]
	return k, ok
}

// Names returns the canonical key names, sorted.
func Names() []string { return append([]string(nil), names...) }

// ForRune returns the key that types r on a US keyboard, with the
// keysym of r itself (so 'A' is the a key with keysym 'A'), and whether
// Shift must be held for it. '\n' is Enter and '\t' is Tab; ok is false
// for any other rune that is not printable ASCII.
func ForRune(r rune) (k Key, shift, ok bool) {
	rk, ok := byRune[r]
	return rk.key, rk.shift, ok
}

// ParseCombo parses a key combination: key names joined by '-', e.g.
// "ctrl-alt-del", "alt-f2", "shift-a", "enter". The keys are pressed in
// order and released in reverse. "ctrl--" would be ambiguous: write
// "ctrl-minus".
func ParseCombo(s string) ([]Key, error) {
	if s == "" {
		return nil, fmt.Errorf("empty key combination")
	}
	parts := strings.Split(s, "-")
	keys := make([]Key, 0, len(parts))
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("key combination %q: empty key name (write - as \"minus\")", s)
		}
		k, ok := Lookup(p)
		if !ok {
			return nil, fmt.Errorf("key combination %q: unknown key %q", s, p)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// Type types s with press (a key down or up) as a US keyboard does:
// per rune (ForRune) its key down and up, inside Left Shift down and up
// for a shifted one, waiting pause after each press. A rune no key types
// is an error before anything is pressed.
func Type(s string, pause time.Duration, press func(k Key, down bool) error) error {
	for _, r := range s {
		if _, _, ok := ForRune(r); !ok {
			return fmt.Errorf("no key types %q on a US keyboard", r)
		}
	}
	shiftKey := byName["shift"]
	send := func(k Key, down bool) error {
		err := press(k, down)
		time.Sleep(pause)
		return err
	}
	for _, r := range s {
		k, shift, _ := ForRune(r)
		var err error
		if shift {
			err = send(shiftKey, true)
		}
		err = errors.Join(err, send(k, true), send(k, false))
		if shift {
			err = errors.Join(err, send(shiftKey, false))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Press presses a combination: keys down in order, hold, then up in
// reverse, waiting pause after each press.
func Press(keys []Key, hold, pause time.Duration, press func(k Key, down bool) error) error {
	for _, k := range keys {
		if err := press(k, true); err != nil {
			return err
		}
		time.Sleep(pause)
	}
	time.Sleep(hold)
	var err error
	for i := len(keys) - 1; i >= 0; i-- {
		err = errors.Join(err, press(keys[i], false))
		time.Sleep(pause)
	}
	return err
}
