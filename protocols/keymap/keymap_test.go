package keymap

import (
	"strings"
	"testing"
)

// Every printable ASCII rune, Enter and Tab map to a key; the key's
// keysym is the rune's own for printable ones, and a shifted rune is on
// the same key as an unshifted one.
func TestEveryPrintableASCIIRuneMaps(t *testing.T) {
	scancodes := map[Qnum]bool{}
	for r := rune(0x20); r <= 0x7e; r++ {
		k, shift, ok := ForRune(r)
		if !ok {
			t.Errorf("%q: no key", r)
			continue
		}
		if k.Keysym != Keysym(r) {
			t.Errorf("%q: keysym %#x, want %#x", r, k.Keysym, r)
		}
		if k.Qnum == 0 || k.Qnum.Extended() {
			t.Errorf("%q: scancode %#x", r, k.Qnum)
		}
		if shift {
			continue
		}
		scancodes[k.Qnum] = true
	}
	for r := rune(0x20); r <= 0x7e; r++ {
		if k, shift, _ := ForRune(r); shift && !scancodes[k.Qnum] {
			t.Errorf("%q: shifted on scancode %#x, which types no unshifted rune", r, k.Qnum)
		}
	}
	for r, want := range map[rune]string{'\n': "enter", '\t': "tab", ' ': "space"} {
		if k, shift, ok := ForRune(r); !ok || shift || k.Name != want {
			t.Errorf("%q: %+v shift %v ok %v, want %s", r, k, shift, ok, want)
		}
	}
	for _, r := range []rune{0, '\r', 0x7f, 'é', '€'} {
		if _, _, ok := ForRune(r); ok {
			t.Errorf("%q maps to a key", r)
		}
	}
	// A few against QEMU's keymaps.csv (qnum column).
	for r, want := range map[rune]Qnum{'a': 0x1e, 'A': 0x1e, 'z': 0x2c, '1': 0x02, '!': 0x02, '0': 0x0b, '\\': 0x2b, '|': 0x2b, '`': 0x29, '~': 0x29, '/': 0x35, '?': 0x35} {
		if k, _, _ := ForRune(r); k.Qnum != want {
			t.Errorf("%q: scancode %#x, want %#x", r, k.Qnum, want)
		}
	}
}

// Every canonical name looks up to a key of that name, in any case; the
// keys are distinct.
func TestNamesRoundTrip(t *testing.T) {
	seen := map[Qnum]string{}
	for _, n := range Names() {
		k, ok := Lookup(n)
		if !ok || k.Name != n {
			t.Errorf("Lookup(%q) = %+v, %v", n, k, ok)
		}
		if k2, ok := Lookup(strings.ToUpper(n)); !ok || k2 != k {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", strings.ToUpper(n), k2, ok, k)
		}
		if other, dup := seen[k.Qnum]; dup {
			t.Errorf("%q and %q have the same scancode %#x", n, other, k.Qnum)
		}
		seen[k.Qnum] = n
		if k.Keysym == 0 || k.Qnum == 0 {
			t.Errorf("%q: %+v", n, k)
		}
	}
	if len(Names()) < 85 {
		t.Errorf("only %d names", len(Names()))
	}
}

func TestParseCombo(t *testing.T) {
	for in, want := range map[string][]Qnum{
		"ctrl-alt-del":    {0x1d, 0x38, 0xd3},
		"Ctrl-Alt-Delete": {0x1d, 0x38, 0xd3},
		"alt-f2":          {0x38, 0x3c},
		"enter":           {0x1c},
		"ctrl-c":          {0x1d, 0x2e},
		"shift-a":         {0x2a, 0x1e},
		"f12":             {0x58},
		"ctrl-]":          {0x1d, 0x1b},
		"ctrl-minus":      {0x1d, 0x0c},
		"rctrl":           {0x9d},
	} {
		keys, err := ParseCombo(in)
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		var got []Qnum
		for _, k := range keys {
			got = append(got, k.Qnum)
		}
		if len(got) != len(want) {
			t.Errorf("%q: %#x, want %#x", in, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%q: %#x, want %#x", in, got, want)
			}
		}
	}
	for _, in := range []string{"", "ctrl-", "ctrl--", "ctrl-alt-foo", "A-B-C!", "ctrl+c"} {
		if _, err := ParseCombo(in); err == nil {
			t.Errorf("%q parsed", in)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error on more than one line: %v", in, err)
		}
	}
}

func TestQnum(t *testing.T) {
	k, _ := Lookup("rctrl")
	if !k.Qnum.Extended() || k.Qnum.Code() != 0x1d {
		t.Errorf("rctrl: %#x", k.Qnum)
	}
	k, _ = Lookup("a")
	if k.Qnum.Extended() || k.Qnum.Code() != 0x1e {
		t.Errorf("a: %#x", k.Qnum)
	}
}

type press struct {
	q    Qnum
	sym  Keysym
	down bool
}

func record(out *[]press) func(Key, bool) error {
	return func(k Key, down bool) error { *out = append(*out, press{k.Qnum, k.Keysym, down}); return nil }
}

func TestType(t *testing.T) {
	var got []press
	if err := Type("aB\n", 0, record(&got)); err != nil {
		t.Fatal(err)
	}
	want := []press{{0x1e, 'a', true}, {0x1e, 'a', false}, {0x2a, XKShiftL, true}, {0x30, 'B', true}, {0x30, 'B', false}, {0x2a, XKShiftL, false}, {0x1c, XKReturn, true}, {0x1c, XKReturn, false}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	got = nil
	if err := Type("ok é", 0, record(&got)); err == nil || len(got) != 0 {
		t.Fatalf("typing é: %v, pressed %v", err, got)
	}
}

func TestPress(t *testing.T) {
	var got []press
	keys, _ := ParseCombo("ctrl-alt-del")
	if err := Press(keys, 0, 0, record(&got)); err != nil {
		t.Fatal(err)
	}
	want := []press{{0x1d, XKControlL, true}, {0x38, XKAltL, true}, {0xd3, XKDelete, true}, {0xd3, XKDelete, false}, {0x38, XKAltL, false}, {0x1d, XKControlL, false}}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}
