package cmdutil

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/spf13/pflag"
)

// The config files (the daemons' server.toml, the client's config.toml)
// are TOML whose keys are long flag names. What they share is here:
// parsing with each key's line, so that an unknown key or a bad value is
// an error naming the file and line, and setting a flag from a key.

// ConfigEntry is one key of a config file's table: its value as the
// flag would take it from a command line.
type ConfigEntry struct {
	Key    string
	Line   int
	Values []string // the scalar's text, or each element of an array
	Kinds  []unstable.Kind
	Array  bool
}

// Text is the entry's value, to tell whether a reload changed it.
func (e ConfigEntry) Text() string {
	if e.Array {
		return "[" + strings.Join(e.Values, "\x00") + "]"
	}
	return e.Values[0]
}

// CheckTOML decodes the file's content b with the full decoder, which
// checks everything TOML forbids (a key given twice, a bad escape), and
// says where: "PATH:LINE:COL: what".
func CheckTOML(path string, b []byte) error {
	var doc map[string]any
	if err := toml.Unmarshal(b, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return fmt.Errorf("%s:%d:%d: %s", path, line, col, strings.TrimPrefix(de.Error(), "toml: "))
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// KeyParts returns the parts of the key of a table header or key/value
// expression of the unstable parser, as written, and its first part's
// node (for its line).
func KeyParts(e *unstable.Node) ([]string, *unstable.Node) {
	var parts []string
	var first *unstable.Node
	for it := e.Key(); it.Next(); {
		if first == nil {
			first = it.Node()
		}
		parts = append(parts, string(it.Node().Data))
	}
	return parts, first
}

// SetValue takes a scalar's text (a string's value, a number's or a
// boolean's literal, which the flag then parses) or an array of them.
func (e *ConfigEntry) SetValue(v *unstable.Node) error {
	if v.Kind != unstable.Array {
		return e.scalar(v)
	}
	e.Array = true
	for it := v.Children(); it.Next(); {
		if err := e.scalar(it.Node()); err != nil {
			return err
		}
	}
	return nil
}

func (e *ConfigEntry) scalar(v *unstable.Node) error {
	switch v.Kind {
	case unstable.String, unstable.Integer, unstable.Float, unstable.Bool:
		e.Values = append(e.Values, string(v.Data))
		e.Kinds = append(e.Kinds, v.Kind)
		return nil
	}
	return fmt.Errorf("want a string, number, boolean or array of them, not %s", strings.ToLower(v.Kind.String()))
}

// Apply sets the flag from the entry: an array only on a repeatable
// flag, where it is the flag's whole list. It sets the value only: the
// flag does not count as given on the command line (Changed).
func (e ConfigEntry) Apply(fl *pflag.Flag) error {
	if err := e.Check(fl); err != nil {
		return err
	}
	if e.Array {
		return fl.Value.(pflag.SliceValue).Replace(e.Values) // all of them, or none for []
	}
	return fl.Value.Set(e.Values[0])
}

// Check says whether the entry's TOML type suits the flag.
func (e ConfigEntry) Check(fl *pflag.Flag) error {
	if _, repeatable := fl.Value.(pflag.SliceValue); e.Array && !repeatable {
		return errors.New("want one value, not an array")
	}
	// TOML's types, so that a quoting slip (listen = 6443) is caught
	// rather than read as text.
	want := unstable.String
	switch fl.Value.Type() {
	case "bool":
		want = unstable.Bool
	case "int", "uint", "int64", "uint64":
		want = unstable.Integer
	}
	for _, k := range e.Kinds {
		if k != want {
			return fmt.Errorf("want %s, not %s", kindName(want), kindName(k))
		}
	}
	return nil
}

func kindName(k unstable.Kind) string {
	switch k {
	case unstable.String:
		return "a string (in quotes)"
	case unstable.Bool:
		return "true or false"
	case unstable.Integer:
		return "an integer"
	}
	return "a " + strings.ToLower(k.String())
}

// ValueError is why the flag refused a value, said for a person: the
// type it wants rather than strconv's words.
func ValueError(fl *pflag.Flag, err error) error {
	switch fl.Value.Type() {
	case "int", "uint", "int64", "uint64":
		return errors.New("want an integer")
	case "bool":
		return errors.New("want true or false")
	}
	return err
}
