package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// A daemon's settings come, for each flag, from the first of: the
// command line, the environment (VIRTCONSOLE_ and the flag's name in
// upper case with "-" as "_"), the config file's table of that daemon
// ([server], [proxy] or [resolver], keys the long flag names), and the
// flag's default. One file serves every daemon: a daemon reads its own
// table only, so each table can be checked strictly (an unknown key or a
// bad value is an error naming the file and line) without the others'
// keys counting as unknown.

// DefaultConfigFile is read when it exists and neither --config nor
// VIRTCONSOLE_CONFIG names a file (tests change it).
var DefaultConfigFile = "/etc/virtconsole/server.toml"

// configTables are the config file's tables, one per daemon command.
var configTables = []string{"server", "proxy", "resolver"}

// daemonOptions are the flags every daemon has besides its own: where
// its settings come from, printing them, and its logs.
type daemonOptions struct {
	table       string // the daemon's table in the config file
	Config      string
	PrintConfig bool
	JSON        bool

	entries []configEntry // the file's, as read at start
}

// notSettings are the daemon flags that say how to read or show the
// settings: they are no keys of the file nor read from the environment
// (but VIRTCONSOLE_CONFIG names the file).
var notSettings = map[string]bool{"config": true, "print-config": true, "json": true, "help": true}

// addDaemonFlags registers --config, --print-config, --json and the log
// flags of cmd, the daemon whose config table is o.table.
func addDaemonFlags(cmd *cobra.Command, o *daemonOptions, log *cmdutil.LogOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.Config, "config", "", "read settings from the ["+o.table+"] table of the TOML `FILE` (default "+DefaultConfigFile+" when it exists, or $VIRTCONSOLE_CONFIG)")
	fl.BoolVar(&o.PrintConfig, "print-config", false, "print the effective settings as a config file (secrets masked) and exit")
	fl.BoolVar(&o.JSON, "json", false, "with --print-config, print JSON")
	cmdutil.AddLogFlags(fl, log)
	_ = cmd.MarkFlagFilename("config", "toml")
	_ = cmd.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions(cmdutil.LogFormats, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions(cmdutil.LogLevels, cobra.ShellCompDirectiveNoFileComp))
}

// configHelp ends the Long help of each daemon.
func configHelp(table string) string {
	return `
Settings: every flag below (but --config, --print-config and --json) can also
be given as the environment variable VIRTCONSOLE_<NAME> (upper case, "-" as
"_": VIRTCONSOLE_TLS_DIR) or as a key of the [` + table + `] table of the config
file (--config FILE, or ` + DefaultConfigFile + ` when it exists); the
command line wins over the environment, which wins over the file. The file
is TOML, its keys the long flag names; a repeatable flag takes an array
(and one value from the environment):
  [` + table + `]
  listen = "127.0.0.1:6443"
  tls-dir = "/etc/pki/virtconsole"
  allowed-origin = ["https://console.example"]
One file holds the [server], [proxy] and [resolver] tables; each daemon reads
its own and rejects an unknown key in it. --print-config shows the result.`
}

// configEntry is one key of the daemon's table.
type configEntry = cmdutil.ConfigEntry

// sources says where each setting came from: "flag", "env NAME",
// "FILE:LINE" or "default".
type sources map[string]string

// load fills the flags of cmd that the command line left unset from the
// environment and the config file, and says where each came from.
func (o *daemonOptions) load(cmd *cobra.Command, f *cmdutil.Factory) (sources, error) {
	path, explicit := o.Config, cmd.Flags().Changed("config")
	if !explicit {
		if path = f.Getenv("VIRTCONSOLE_CONFIG"); path != "" {
			explicit = true
		} else {
			path = DefaultConfigFile
		}
	}
	entries, err := readConfig(path, o.table)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !explicit:
		path, entries = "", nil // no file is fine when none was asked for
	case err != nil:
		return nil, &cmdutil.FlagError{Err: err}
	}
	if o.JSON && !o.PrintConfig {
		return nil, &cmdutil.FlagError{Err: errors.New("--json goes with --print-config")}
	}
	o.Config, o.entries = path, entries
	src := sources{}
	if err := checkEntries(cmd, path, o.table, entries); err != nil {
		return nil, &cmdutil.FlagError{Err: err}
	}
	byKey := map[string]configEntry{}
	for _, e := range entries {
		byKey[e.Key] = e
	}
	// A former name on the command line sets its flag as the flag would.
	aliased := map[string]bool{}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if a := cmdutil.AliasOf(fl); a != "" {
			aliased[a] = true
		}
	})
	var errs []error
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if notSettings[fl.Name] || fl.Deprecated != "" || len(errs) > 0 {
			return
		}
		env := EnvName(fl.Name)
		if fl.Changed || aliased[fl.Name] {
			src[fl.Name] = "flag"
		} else if v, ok := lookupEnv(f, env); ok {
			src[fl.Name] = "env " + env
			if err := fl.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: invalid value for --%s: %v", env, v, fl.Name, cmdutil.ValueError(fl, err)))
			}
		} else if e, ok := byKey[fl.Name]; ok {
			src[fl.Name] = fmt.Sprintf("%s:%d", path, e.Line)
			if err := e.Apply(fl); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: invalid value for %s: %v", path, e.Line, fl.Name, cmdutil.ValueError(fl, err)))
			}
		} else {
			src[fl.Name] = "default"
		}
	})
	if len(errs) > 0 {
		return nil, &cmdutil.FlagError{Err: errs[0]}
	}
	return src, nil
}

// checkEntries checks the keys of cmd's table in the file at path: each
// must be a current flag's name with a value of its type, also where the
// command line or the environment overrides it (the file is wrong either
// way).
func checkEntries(cmd *cobra.Command, path, table string, entries []configEntry) error {
	for _, e := range entries {
		fl := cmd.Flags().Lookup(e.Key)
		if fl == nil || notSettings[e.Key] {
			return fmt.Errorf("%s:%d: unknown key %q in [%s]; the keys are the flags of '%s --help'", path, e.Line, e.Key, table, cmd.CommandPath())
		}
		if fl.Deprecated != "" {
			return fmt.Errorf("%s:%d: %q is a former name: %s", path, e.Line, e.Key, fl.Deprecated)
		}
		if err := e.Check(fl); err != nil {
			return fmt.Errorf("%s:%d: invalid value for %s: %v", path, e.Line, e.Key, err)
		}
	}
	return nil
}

// EnvName is the environment variable of the daemon flag name.
func EnvName(name string) string {
	return "VIRTCONSOLE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// lookupEnv reads an environment variable through the Factory; set but
// empty counts as unset, as for LIBVIRT_DEFAULT_URI.
func lookupEnv(f *cmdutil.Factory, name string) (string, bool) {
	v := f.Getenv(name)
	return v, v != ""
}

// readConfig parses the TOML file at path and returns the keys of its
// [table], in order. Any other table must be another daemon's; a key
// outside every table is an error.
func readConfig(path, table string) ([]configEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is said once, below
		}
		return nil, fmt.Errorf("config file %s: %w; give an existing file to --config (or VIRTCONSOLE_CONFIG)", path, err)
	}
	return parseConfig(path, b, table)
}

// parseConfig is readConfig on the file's content b.
func parseConfig(path string, b []byte, table string) ([]configEntry, error) {
	// The full decoder first: it checks everything TOML forbids and
	// says where.
	if err := cmdutil.CheckTOML(path, b); err != nil {
		return nil, err
	}
	// Then the parser, which keeps each key's line.
	var p unstable.Parser
	p.Reset(b)
	line := func(n *unstable.Node) int { return p.Shape(n.Raw).Start.Line }
	var out []configEntry
	current := ""
	for p.NextExpression() {
		e := p.Expression()
		parts, first := cmdutil.KeyParts(e)
		key := strings.Join(parts, ".")
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			if e.Kind == unstable.ArrayTable || !slices.Contains(configTables, key) {
				return nil, fmt.Errorf("%s:%d: unknown table [%s]: want [%s]", path, line(first), key, strings.Join(configTables, "], ["))
			}
			current = key
		case unstable.KeyValue:
			switch {
			case current == "":
				return nil, fmt.Errorf("%s:%d: %q is outside any table: put it under [%s] (or [%s])", path, line(first), key, table, strings.Join(otherTables(table), "], ["))
			case current != table:
				continue
			}
			ce := configEntry{Key: key, Line: line(first)}
			if err := ce.SetValue(e.Value()); err != nil {
				return nil, fmt.Errorf("%s:%d: invalid value for %s: %v", path, ce.Line, key, err)
			}
			out = append(out, ce)
		}
	}
	if err := p.Error(); err != nil { // Unmarshal would have said so first
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

func otherTables(table string) []string {
	var out []string
	for _, t := range configTables {
		if t != table {
			out = append(out, t)
		}
	}
	return out
}

// print writes the effective settings of cmd: a config file's [table]
// with each setting's source as a comment, or with --json an object.
// Secrets are masked.
func (o *daemonOptions) print(cmd *cobra.Command, w io.Writer, src sources) error {
	settings := map[string]any{}
	var names []string
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if _, ok := src[fl.Name]; ok {
			settings[fl.Name] = settingValue(fl)
			names = append(names, fl.Name)
		}
	})
	if o.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Command  string         `json:"command"`
			Config   string         `json:"config"`
			Table    string         `json:"table"`
			Settings map[string]any `json:"settings"`
			Sources  sources        `json:"sources"`
		}{cmd.CommandPath(), o.Config, o.table, settings, src})
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# %s: effective settings (flags > VIRTCONSOLE_* environment > %s > defaults)\n", cmd.CommandPath(), orNone(o.Config))
	fmt.Fprintf(&buf, "[%s]\n", o.table)
	for _, n := range names {
		b, err := tomlValue(settings[n])
		if err != nil {
			return err
		}
		fmt.Fprintf(&buf, "%s = %s # %s\n", n, b, src[n])
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func orNone(path string) string {
	if path == "" {
		return "no config file"
	}
	return path
}

// tomlValue writes v as a TOML value: JSON's strings, numbers, booleans
// and arrays of strings are TOML's too (less the HTML escapes).
func tomlValue(v any) (string, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSpace(buf.String()), nil
}

// settingValue is the flag's value as print shows it: typed, masked.
func settingValue(fl *pflag.Flag) any {
	if sv, ok := fl.Value.(pflag.SliceValue); ok {
		vals := sv.GetSlice()
		for i := range vals {
			vals[i] = mask(fl, vals[i])
		}
		if vals == nil {
			vals = []string{}
		}
		return vals
	}
	s := fl.Value.String()
	switch fl.Value.Type() {
	case "bool":
		return s == "true"
	case "int":
		return json.Number(s)
	}
	return mask(fl, s)
}

// mask hides a secret's value; see cmdutil.MarkSecret.
func mask(fl *pflag.Flag, s string) string {
	switch cmdutil.SecretKind(fl) {
	case cmdutil.SecretValue:
		if s != "" {
			return "********"
		}
	case cmdutil.SecretURL:
		if u, err := url.Parse(s); err == nil {
			return u.Redacted()
		}
		return "********" // unparsable: it may still hold a password
	}
	return s
}
