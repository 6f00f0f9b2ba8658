package connect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/termio"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// The client config file: named profiles of defaults for the client
// commands' flags, as gh keeps hosts and kubectl keeps contexts.
//
//	default-profile = "lab"
//	[profiles.lab]
//	proxy = "wss://proxy.lab:6443"
//	ca-file = "/home/me/.config/virtconsole/lab-ca.pem"
//	token-command = "pass show vm/token"
//
// It is not the daemons' server.toml (--config and VIRTCONSOLE_CONFIG of
// "virtconsole server"): the client reads its own file only.

// Environment variables of the client config.
const (
	EnvProfile      = "VIRTCONSOLE_PROFILE"
	EnvClientConfig = "VIRTCONSOLE_CLIENT_CONFIG"
	EnvLibvirtURI   = "LIBVIRT_DEFAULT_URI"
)

// DefaultProfileKey is the config file's top-level key naming the
// profile used when neither --profile nor VIRTCONSOLE_PROFILE names one.
const DefaultProfileKey = "default-profile"

// TokenCommandTimeout bounds a profile's token-command.
const TokenCommandTimeout = 30 * time.Second

// ProfileKey is a key a profile may hold: a client command's long flag
// name (token-command excepted), applied to the commands that have it.
type ProfileKey struct {
	Name string
	// Flag is the flag that, given on the command line, overrides the
	// key (its own name but for token-command: --token-file).
	Flag string
	// Env is the environment variable that overrides the key, or "".
	Env string
	// Bool: the value is true or false; List: a string or an array of
	// them; otherwise a string.
	Bool, List bool
	// Secret: "config view" shows only whether it is set.
	Secret bool
	// Path: a file or directory, made absolute by "config set".
	Path  bool
	check func(string) error
}

// ProfileKeys are the keys a profile may hold, in the order "config
// view" shows them.
var ProfileKeys = []ProfileKey{
	{Name: "proxy", Env: EnvProxy, check: func(v string) error { _, err := ProxyURL(v, true); return err }},
	{Name: "ca-file", Path: true},
	{Name: "proxy-tls-dir", Path: true},
	{Name: "proxy-insecure", Bool: true},
	{Name: "token-file", Path: true, Env: EnvToken},
	{Name: "token-command", Flag: "token-file", Env: EnvToken, Secret: true},
	{Name: "connect", Env: EnvLibvirtURI},
	{Name: "connect-tls-dir", Path: true},
	{Name: "connect-insecure", Bool: true},
	{Name: "tls-min-version", check: func(v string) error { _, err := tlscreds.ParsePolicy(v, nil); return err }},
	{Name: "tls-cipher-suites", List: true},
	{Name: "proxy-timeout", check: positiveDuration},
	{Name: "handshake-timeout", check: positiveDuration},
	{Name: "escape", check: func(v string) error { _, err := termio.ParseEscape(v); return err }},
	{Name: "viewer"},
	{Name: "gateway", Env: EnvGateway, check: func(v string) error {
		if u, err := url.Parse(v); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			return fmt.Errorf("%q: want https://HOST:PORT, the proxy's --spice-connect-listen address", v)
		}
		return nil
	}},
}

// LookupProfileKey returns the key named name.
func LookupProfileKey(name string) (ProfileKey, bool) {
	i := slices.IndexFunc(ProfileKeys, func(k ProfileKey) bool { return k.Name == name })
	if i < 0 {
		return ProfileKey{}, false
	}
	return ProfileKeys[i], true
}

// ProfileKeyNames lists the keys, for messages.
func ProfileKeyNames() string {
	names := make([]string, len(ProfileKeys))
	for i, k := range ProfileKeys {
		names[i] = k.Name
	}
	return strings.Join(names, ", ")
}

// FlagName is the flag that overrides k.
func (k ProfileKey) FlagName() string {
	if k.Flag != "" {
		return k.Flag
	}
	return k.Name
}

func positiveDuration(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%q: want a positive duration, e.g. 20s", v)
	}
	return nil
}

// CheckValue checks an entry's TOML type and value for k.
func (k ProfileKey) CheckValue(e cmdutil.ConfigEntry) error {
	want := unstable.String
	if k.Bool {
		want = unstable.Bool
	}
	if e.Array && !k.List {
		return errors.New("want one value, not an array")
	}
	for _, kind := range e.Kinds {
		if kind != want {
			if want == unstable.Bool {
				return errors.New("want true or false")
			}
			return errors.New("want a string (in quotes)")
		}
	}
	if k.check != nil && !e.Array {
		return k.check(e.Values[0])
	}
	return nil
}

// Entry makes the entry "config set" writes for k from the command
// line's text.
func (k ProfileKey) Entry(value string) (cmdutil.ConfigEntry, error) {
	e := cmdutil.ConfigEntry{Key: k.Name, Values: []string{value}, Kinds: []unstable.Kind{unstable.String}}
	switch {
	case k.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return e, errors.New("want true or false")
		}
		e.Values, e.Kinds = []string{strconv.FormatBool(b)}, []unstable.Kind{unstable.Bool}
	case k.Path:
		abs, err := filepath.Abs(value)
		if err != nil {
			return e, err
		}
		e.Values[0] = abs
	case k.List:
		e.Array, e.Values, e.Kinds = true, nil, nil
		for _, v := range strings.Split(value, ",") {
			if v = strings.TrimSpace(v); v != "" {
				e.Values = append(e.Values, v)
				e.Kinds = append(e.Kinds, unstable.String)
			}
		}
	}
	return e, k.CheckValue(e)
}

// profileNameRE is what a profile may be called: a TOML bare key.
var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// CheckProfileName refuses a name that is not a bare key.
func CheckProfileName(name string) error {
	if !profileNameRE.MatchString(name) {
		return fmt.Errorf("profile name %q: use letters, digits, - and _", name)
	}
	return nil
}

// ClientConfig is the client config file, as read.
type ClientConfig struct {
	Path   string
	Exists bool
	// Default is the default-profile's value, "" without one.
	Default     string
	DefaultLine int
	Profiles    []*Profile

	src         []byte
	defaultSpan span
}

// Profile is one [profiles.NAME] table.
type Profile struct {
	Name    string
	Line    int
	Entries []cmdutil.ConfigEntry

	spans []span // of Entries
	end   int    // offset after the table's last line
}

// span is a key/value's bytes in the file.
type span struct{ start, end int }

// Profile returns the profile called name, or nil.
func (c *ClientConfig) Profile(name string) *Profile {
	i := slices.IndexFunc(c.Profiles, func(p *Profile) bool { return p.Name == name })
	if i < 0 {
		return nil
	}
	return c.Profiles[i]
}

// Names lists the profiles in the file's order.
func (c *ClientConfig) Names() []string {
	names := make([]string, len(c.Profiles))
	for i, p := range c.Profiles {
		names[i] = p.Name
	}
	return names
}

// Entry returns the profile's entry for key.
func (p *Profile) Entry(key string) (cmdutil.ConfigEntry, bool) {
	i := slices.IndexFunc(p.Entries, func(e cmdutil.ConfigEntry) bool { return e.Key == key })
	if i < 0 {
		return cmdutil.ConfigEntry{}, false
	}
	return p.Entries[i], true
}

// ClientConfigFile is the path of the client config file: --config's
// (explicit), else VIRTCONSOLE_CLIENT_CONFIG's (explicit), else
// $XDG_CONFIG_HOME/virtconsole/config.toml, else
// ~/.config/virtconsole/config.toml; "" without HOME. The environment
// is f's, so that tests choose the file.
func ClientConfigFile(f *cmdutil.Factory, flag string) (path string, explicit bool) {
	if flag != "" {
		return flag, true
	}
	if p := f.Getenv(EnvClientConfig); p != "" {
		return p, true
	}
	if dir := f.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "virtconsole", "config.toml"), false
	}
	if home := f.Getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "virtconsole", "config.toml"), false
	}
	return "", false // no home: no config file
}

// ReadClientConfig reads the config file at path. A file that does not
// exist is an empty config (Exists false); one that its group or others
// can read gets warn's one-line warning.
func ReadClientConfig(path string, warn func(string)) (*ClientConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &ClientConfig{Path: path}, nil
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o022 != 0 {
		// Its token-command runs: a file others can change runs their
		// commands as you.
		return nil, fmt.Errorf("config file %s is writable by others than you (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	if w := resolver.ExposedWarning("config file", path); w != "" && warn != nil {
		warn(w)
	}
	c, err := ParseClientConfig(path, b)
	if err != nil {
		return nil, err
	}
	c.Exists = true
	return c, nil
}

// ParseClientConfig parses the config file's content b; errors name
// path and the line.
func ParseClientConfig(path string, b []byte) (*ClientConfig, error) {
	if err := cmdutil.CheckTOML(path, b); err != nil {
		return nil, err
	}
	c := &ClientConfig{Path: path, src: b}
	var p unstable.Parser
	p.Reset(b)
	line := func(n *unstable.Node) int { return p.Shape(n.Raw).Start.Line }
	var table []string
	var current *Profile
	for p.NextExpression() {
		e := p.Expression()
		parts, first := cmdutil.KeyParts(e)
		switch e.Kind {
		case unstable.ArrayTable:
			return nil, fmt.Errorf("%s:%d: unknown table [[%s]]: want [profiles.NAME]", path, line(first), strings.Join(parts, "."))
		case unstable.Table:
			table, current = parts, nil
			switch {
			case len(parts) == 1 && parts[0] == "profiles":
			case len(parts) == 2 && parts[0] == "profiles":
				prof, err := c.addProfile(path, parts[1], line(first))
				if err != nil {
					return nil, err
				}
				current = prof
				prof.end = lineEnd(b, int(first.Raw.Offset))
			default:
				return nil, fmt.Errorf("%s:%d: unknown table [%s]: want [profiles.NAME]", path, line(first), strings.Join(parts, "."))
			}
		case unstable.KeyValue:
			full := append(slices.Clone(table), parts...)
			ce := cmdutil.ConfigEntry{Key: strings.Join(full, "."), Line: line(first)}
			if err := ce.SetValue(e.Value()); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid value for %s: %v", path, ce.Line, ce.Key, err)
			}
			sp := span{int(e.Raw.Offset), int(e.Raw.Offset + e.Raw.Length)}
			if err := c.addEntry(path, full, ce, sp, current); err != nil {
				return nil, err
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if c.Default != "" && c.Profile(c.Default) == nil {
		return nil, fmt.Errorf("%s:%d: %s %q: no such profile%s", path, c.DefaultLine, DefaultProfileKey, c.Default, c.listing())
	}
	return c, nil
}

func (c *ClientConfig) addProfile(path, name string, line int) (*Profile, error) {
	if err := CheckProfileName(name); err != nil {
		return nil, fmt.Errorf("%s:%d: %v", path, line, err)
	}
	if prof := c.Profile(name); prof != nil {
		return prof, nil // [profiles.x] after profiles.x.key: TOML allows it
	}
	prof := &Profile{Name: name, Line: line}
	c.Profiles = append(c.Profiles, prof)
	return prof, nil
}

// addEntry files the key/value at the full key path full.
func (c *ClientConfig) addEntry(path string, full []string, ce cmdutil.ConfigEntry, sp span, in *Profile) error {
	switch {
	case len(full) == 1 && full[0] == DefaultProfileKey:
		if ce.Array || ce.Kinds[0] != unstable.String {
			return fmt.Errorf("%s:%d: invalid value for %s: want a profile's name (in quotes)", path, ce.Line, DefaultProfileKey)
		}
		c.Default, c.DefaultLine, c.defaultSpan = ce.Values[0], ce.Line, sp
		return nil
	case len(full) != 3 || full[0] != "profiles":
		return fmt.Errorf("%s:%d: unknown key %q: want %s at the top, and a profile's keys under [profiles.NAME]", path, ce.Line, ce.Key, DefaultProfileKey)
	}
	prof := in
	if prof == nil || prof.Name != full[1] {
		var err error
		if prof, err = c.addProfile(path, full[1], ce.Line); err != nil {
			return err
		}
	}
	ce.Key = full[2]
	if ce.Key == "token" {
		return fmt.Errorf("%s:%d: tokens are not kept in the config file: use token-file FILE or token-command COMMAND (it prints the token)", path, ce.Line)
	}
	k, ok := LookupProfileKey(ce.Key)
	if !ok {
		return fmt.Errorf("%s:%d: unknown key %q in profile %s; the keys are %s", path, ce.Line, ce.Key, prof.Name, ProfileKeyNames())
	}
	if err := k.CheckValue(ce); err != nil {
		return fmt.Errorf("%s:%d: invalid value for %s: %v", path, ce.Line, ce.Key, err)
	}
	other := map[string]string{"token-file": "token-command", "token-command": "token-file"}[ce.Key]
	if _, both := prof.Entry(other); both {
		return fmt.Errorf("%s:%d: profile %s has token-file and token-command: keep one", path, ce.Line, prof.Name)
	}
	prof.Entries = append(prof.Entries, ce)
	prof.spans = append(prof.spans, sp)
	if in == prof {
		prof.end = lineEnd(c.src, sp.end)
	}
	return nil
}

// lineEnd is the offset after the line holding offset i.
func lineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

// listing is ": the profiles are a, b" (or that there are none).
func (c *ClientConfig) listing() string {
	if len(c.Profiles) == 0 {
		return "; the file has no profiles"
	}
	return "; the profiles are " + strings.Join(c.Names(), ", ")
}

// WithValue returns the file's content with key set to e's value in the
// profile (created at the end of the file if need be); the rest of the
// file, comments and other profiles, stays as it was.
func (c *ClientConfig) WithValue(profile string, e cmdutil.ConfigEntry) ([]byte, error) {
	line, err := tomlLine(e)
	if err != nil {
		return nil, err
	}
	prof := c.Profile(profile)
	if prof == nil {
		out := bytes.TrimRight(c.src, "\n")
		if len(out) > 0 {
			out = append(out, "\n\n"...)
		}
		return append(out, "[profiles."+profile+"]\n"+line+"\n"...), nil
	}
	if i := slices.IndexFunc(prof.Entries, func(x cmdutil.ConfigEntry) bool { return x.Key == e.Key }); i >= 0 {
		return splice(c.src, prof.spans[i], line), nil
	}
	if prof.end == 0 {
		return nil, fmt.Errorf("%s:%d: profile %s is written with dotted keys, not as a [profiles.%s] table; add %s there by hand", c.Path, prof.Line, profile, profile, e.Key)
	}
	return splice(c.src, span{prof.end, prof.end}, line+"\n"), nil
}

// WithDefault returns the file's content with default-profile set to
// name.
func (c *ClientConfig) WithDefault(name string) ([]byte, error) {
	line, err := tomlLine(cmdutil.ConfigEntry{Key: DefaultProfileKey, Values: []string{name}, Kinds: []unstable.Kind{unstable.String}})
	if err != nil {
		return nil, err
	}
	if c.DefaultLine > 0 {
		return splice(c.src, c.defaultSpan, line), nil
	}
	return splice(c.src, span{0, 0}, line+"\n"), nil
}

func splice(b []byte, sp span, text string) []byte {
	out := make([]byte, 0, len(b)+len(text))
	out = append(out, b[:sp.start]...)
	out = append(out, text...)
	return append(out, b[sp.end:]...)
}

// tomlLine writes e as "key = value": JSON's strings, booleans and
// arrays of strings are TOML's too (less the HTML escapes).
func tomlLine(e cmdutil.ConfigEntry) (string, error) {
	var v any
	switch {
	case e.Array:
		v = append([]string{}, e.Values...)
	case e.Kinds[0] == unstable.Bool:
		v = e.Values[0] == "true"
	default:
		v = e.Values[0]
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return e.Key + " = " + strings.TrimSpace(buf.String()), nil
}
