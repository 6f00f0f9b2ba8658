// Package config implements "virtconsole config": the client config
// file's profiles, shown (view, get, list-profiles) and edited (set,
// use-profile) safely.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/resolver"
)

// Options are the flags of "virtconsole config" and its subcommands.
type Options struct {
	IO      *cmdutil.IOStreams
	Profile connect.ProfileOptions
	JSON    bool

	// Defaults are the client commands' flags, for their default values
	// (view); nil shows none.
	Defaults []*pflag.FlagSet
}

// NewCmdConfig returns "virtconsole config" with its subcommands.
// defaults are the flag sets of the client commands (for "view").
func NewCmdConfig(f *cmdutil.Factory, defaults ...*pflag.FlagSet) *cobra.Command {
	opts := &Options{IO: f.IOStreams, Defaults: defaults}
	cmd := &cobra.Command{
		Use:   "config <command>",
		Short: "Show and edit the client profiles (proxy, CA, token source, viewer…)",
		Long:  connect.ProfileHelp,
		Example: `  # once: a profile for the lab's proxy, made the default
  virtconsole config set proxy wss://proxy.lab:6443 --profile lab
  virtconsole config set ca-file ~/.config/virtconsole/lab-ca.pem --profile lab
  virtconsole config set token-command 'pass show vm/token' --profile lab
  virtconsole config use-profile lab

  # then, every time
  virtconsole serial
  virtconsole vnc myvm --viewer auto

  # what a command would use, and where each value comes from
  virtconsole config view`,
		Args: cobra.NoArgs,
	}
	fl := cmd.PersistentFlags()
	fl.StringVar(&opts.Profile.Name, "profile", "", "the profile `NAME` (env "+connect.EnvProfile+"; default: the file's default-profile)")
	fl.StringVar(&opts.Profile.Config, "config", "", "the client config `FILE` (default $XDG_CONFIG_HOME/virtconsole/config.toml; env "+connect.EnvClientConfig+")")
	_ = cmd.MarkPersistentFlagFilename("config", "toml")
	_ = cmd.RegisterFlagCompletionFunc("profile", connect.CompleteProfiles(&opts.Profile.Config))
	cmd.AddCommand(newCmdView(f, opts), newCmdGet(f, opts), newCmdSet(f, opts), newCmdUseProfile(f, opts), newCmdListProfiles(f, opts))
	return cmd
}

func completeKeys(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveDefault
	}
	var keys []string
	for _, k := range connect.ProfileKeys {
		keys = append(keys, k.Name)
	}
	return keys, cobra.ShellCompDirectiveNoFileComp
}

// Setting is one key of "config view".
type Setting struct {
	Key    string `json:"key"`
	Value  any    `json:"value"`
	Source string `json:"source"`
}

// View is what "config view --json" prints.
type View struct {
	Config   string    `json:"config"`
	Exists   bool      `json:"exists"`
	Profile  string    `json:"profile"`
	Chosen   string    `json:"profile_source,omitempty"`
	Profiles []string  `json:"profiles"`
	Settings []Setting `json:"settings"`
}

func newCmdView(f *cmdutil.Factory, opts *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "view",
		Short: "Show the effective client settings and where each comes from",
		Long: `Show the settings a client command would use with this profile, environment
and config file, and where each comes from: env NAME, profile NAME or default
(a flag given to the command itself wins over all of them). Secrets are not
shown: a token-command or a token in ` + connect.EnvToken + ` shows as "(set)", and a
password in a URL as "xxxxx".

With --json: an object with config (the file's path), exists, profile,
profile_source, profiles, and settings, an array of {key, value, source}.`,
		Example: `  virtconsole config view
  virtconsole config view --profile other --json | jq -r '.settings[] | select(.key=="proxy") | .value'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runView(f, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the settings as JSON")
	return cmd
}

func runView(f *cmdutil.Factory, opts *Options) error {
	p := &opts.Profile
	if err := p.Load(f); err != nil {
		return err
	}
	v := View{Config: p.File.Path, Exists: p.File.Exists, Profiles: p.File.Names(), Settings: []Setting{}}
	if p.Profile != nil {
		v.Profile, v.Chosen = p.Profile.Name, p.How
	}
	for _, k := range connect.ProfileKeys {
		s := Setting{Key: k.Name, Source: p.Source(f, k, false)}
		switch {
		case k.Env == connect.EnvToken && strings.HasPrefix(s.Source, "env "):
			s.Value = "(set)" // the token itself
		case strings.HasPrefix(s.Source, "env "):
			s.Value = shown(k, []string{f.Getenv(k.Env)}, false)
		case strings.HasPrefix(s.Source, "profile "):
			e, _ := p.Profile.Entry(k.Name)
			s.Value = shown(k, e.Values, e.Array)
		default:
			s.Value = opts.defaultValue(k)
		}
		v.Settings = append(v.Settings, s)
	}
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	out := opts.IO.Out
	file := v.Config
	if !v.Exists {
		file += " (does not exist)"
	}
	fmt.Fprintf(out, "config file: %s\n", file)
	switch {
	case v.Profile != "":
		fmt.Fprintf(out, "profile: %s (from %s)\n", v.Profile, v.Chosen)
	default:
		fmt.Fprintf(out, "profile: none\n")
	}
	fmt.Fprintln(out, "precedence: flags > environment > profile > defaults")
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, s := range v.Settings {
		text := fmt.Sprint(s.Value)
		if l, ok := s.Value.([]string); ok {
			text = strings.Join(l, ",")
		}
		if text == "" {
			text = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, text, s.Source)
	}
	return tw.Flush()
}

// shown is a value as view shows it: a secret as "(set)", a URL's
// password masked, a boolean typed, a list as a list.
func shown(k connect.ProfileKey, values []string, array bool) any {
	switch {
	case k.Secret:
		return "(set)" // a token-command may hold a secret
	case array:
		return values
	case k.Bool:
		return values[0] == "true"
	case k.Name == "proxy" || k.Name == "connect":
		if u, err := url.Parse(values[0]); err == nil {
			return u.Redacted()
		}
	}
	return values[0]
}

// defaultValue is the flag's default of the first client command that
// has it.
func (opts *Options) defaultValue(k connect.ProfileKey) any {
	if k.Secret {
		return ""
	}
	for _, fs := range opts.Defaults {
		if fl := fs.Lookup(k.Name); fl != nil {
			if sv, ok := fl.Value.(pflag.SliceValue); ok {
				return append([]string{}, sv.GetSlice()...)
			}
			return shown(connect.ProfileKey{Name: k.Name, Bool: k.Bool}, []string{fl.DefValue}, false)
		}
	}
	return ""
}

func newCmdGet(f *cmdutil.Factory, opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "get KEY",
		Short: "Print a key of a profile",
		Long: `Print the value of KEY in the profile (--profile, else ` + connect.EnvProfile + `, else the
file's default-profile), or of default-profile itself. A key the profile does
not hold prints nothing and exits 7. token-command prints "(set)": it is a
command line that may hold a secret; read the file to see it.`,
		Example: `  virtconsole config get proxy
  virtconsole config get ca-file --profile other
  virtconsole config get default-profile`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runGet(f, opts, args[0])
		},
	}
}

func runGet(f *cmdutil.Factory, opts *Options, key string) error {
	p := &opts.Profile
	if key != connect.DefaultProfileKey {
		if _, err := checkKey(key); err != nil {
			return err
		}
	}
	if err := p.Load(f); err != nil {
		return err
	}
	if key == connect.DefaultProfileKey {
		if p.File.Default == "" {
			return cmdutil.WithCode(cmdutil.ExitNotFound, fmt.Errorf("%s has no %s", p.File.Path, key))
		}
		_, err := fmt.Fprintln(opts.IO.Out, p.File.Default)
		return err
	}
	if p.Profile == nil {
		return &cmdutil.FlagError{Err: fmt.Errorf("no profile chosen: give --profile NAME (profiles: %s)", orNone(p.File.Names()))}
	}
	e, ok := p.Profile.Entry(key)
	if !ok {
		return cmdutil.WithCode(cmdutil.ExitNotFound, fmt.Errorf("profile %s has no %s", p.Profile.Name, key))
	}
	k, _ := connect.LookupProfileKey(key)
	v := shown(k, e.Values, e.Array)
	if l, isList := v.([]string); isList {
		v = strings.Join(l, ",")
	}
	_, err := fmt.Fprintln(opts.IO.Out, v)
	return err
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none yet"
	}
	return strings.Join(names, ", ")
}

// checkKey refuses a key that is not a profile's.
func checkKey(key string) (connect.ProfileKey, error) {
	if key == "token" {
		return connect.ProfileKey{}, &cmdutil.FlagError{Err: errors.New("tokens are not kept in the config file: set token-file FILE or token-command COMMAND (it prints the token)")}
	}
	k, ok := connect.LookupProfileKey(key)
	if !ok {
		return k, &cmdutil.FlagError{Err: fmt.Errorf("unknown key %q; the keys are %s (and %s)", key, connect.ProfileKeyNames(), connect.DefaultProfileKey)}
	}
	return k, nil
}

func newCmdSet(f *cmdutil.Factory, opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY VALUE",
		Short: "Set a key of a profile (the file and profile are created if need be)",
		Long: `Set KEY to VALUE in the profile (--profile, else ` + connect.EnvProfile + `, else the file's
default-profile; in a file with no profile yet, a profile named "default").
A new file's first profile becomes its default-profile, so one "config set"
is all a client command needs to use it. The
value is checked as the flag would check it (a proxy URL, an escape key, a
duration…); tls-cipher-suites takes a comma-separated list. The file is
written atomically (a new file beside it, synced, renamed over it) with mode
0600, in a directory created with mode 0700; other keys, profiles and comments
stay as they were.

Tokens are never kept in the file: set token-file to a file holding the token,
or token-command to a command that prints it. A token-file or token-command
replaces the other.`,
		Example: `  virtconsole config set proxy wss://proxy.lab:6443 --profile lab
  virtconsole config set ca-file /home/me/.config/virtconsole/lab-ca.pem --profile lab
  virtconsole config set token-command 'pass show vm/token' --profile lab
  virtconsole config set escape '^A'`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSet(f, opts, args[0], args[1])
		},
	}
}

// FirstProfile is the profile a "config set" without --profile makes in
// a file with none.
const FirstProfile = "default"

func runSet(f *cmdutil.Factory, opts *Options, key, value string) error {
	if key == connect.DefaultProfileKey {
		return runUseProfile(f, opts, value)
	}
	k, err := checkKey(key)
	if err != nil {
		return err
	}
	e, err := k.Entry(value)
	if err != nil {
		return &cmdutil.FlagError{Err: fmt.Errorf("%s: %v", key, err)}
	}
	p := &opts.Profile
	if err := loadForEdit(f, p); err != nil {
		return err
	}
	name := p.Name
	switch {
	case name == "" && p.Profile != nil:
		name = p.Profile.Name
	case name == "" && len(p.File.Names()) == 0:
		// A first "config set" needs no profile name: one is made,
		// and (below) becomes the default.
		name = FirstProfile
	case name == "":
		return &cmdutil.FlagError{Err: fmt.Errorf("which profile? give --profile NAME (profiles: %s)", orNone(p.File.Names()))}
	}
	if err := connect.CheckProfileName(name); err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	c := p.File
	var b []byte
	if other := map[string]string{"token-file": "token-command", "token-command": "token-file"}[key]; other != "" {
		if prof := c.Profile(name); prof != nil {
			if _, both := prof.Entry(other); both {
				return &cmdutil.FlagError{Err: fmt.Errorf("profile %s has %s already: a profile keeps one of token-file and token-command; edit %s to remove it", name, other, c.Path)}
			}
		}
	}
	if b, err = c.WithValue(name, e); err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	if len(c.Profiles) == 0 && c.Default == "" {
		// The first profile of a file is its default.
		if c, err = connect.ParseClientConfig(c.Path, b); err == nil {
			b, err = c.WithDefault(name)
		}
		if err != nil {
			return err
		}
	}
	return save(c.Path, b)
}

// loadForEdit reads the config file for set, use-profile and
// list-profiles: a missing file is an empty one, even one --config
// names, and a profile that does not exist is no error.
func loadForEdit(f *cmdutil.Factory, p *connect.ProfileOptions) error {
	path, _ := connect.ClientConfigFile(f, p.Config)
	if path == "" {
		return &cmdutil.FlagError{Err: errors.New("no config file: HOME and XDG_CONFIG_HOME are unset; give --config FILE")}
	}
	c, err := connect.ReadClientConfig(path, func(w string) { fmt.Fprintln(f.IOStreams.ErrOut, "warning: "+w) })
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	p.File = c
	if p.Name == "" {
		p.Name = f.Getenv(connect.EnvProfile)
	}
	if p.Name == "" && c.Default != "" {
		p.Profile = c.Profile(c.Default)
	}
	return nil
}

// save checks that b is a valid config file and writes it to path
// atomically, mode 0600, its directory created with mode 0700.
func save(path string, b []byte) error {
	if _, err := connect.ParseClientConfig(path, b); err != nil {
		return fmt.Errorf("the edited file would not be valid (%v); nothing written", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return &cmdutil.FlagError{Err: fmt.Errorf("create the config directory: %w", err)}
	}
	if err := resolver.WriteFileAtomicMode(path, b, 0o600); err != nil {
		return fmt.Errorf("write the config file: %w", err)
	}
	return nil
}

func newCmdUseProfile(f *cmdutil.Factory, opts *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "use-profile NAME",
		Short: "Make NAME the default profile",
		Long: `Set the config file's default-profile to NAME: the profile every client
command uses without --profile or ` + connect.EnvProfile + `. A profile that does not exist
yet is created, empty (fill it with "config set").`,
		Example: `  virtconsole config use-profile lab`,
		Args:    cobra.ExactArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return connect.CompleteProfiles(&opts.Profile.Config)(cmd, args, toComplete)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUseProfile(f, opts, args[0])
		},
	}
}

func runUseProfile(f *cmdutil.Factory, opts *Options, name string) error {
	if err := connect.CheckProfileName(name); err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	p := &opts.Profile
	if err := loadForEdit(f, p); err != nil {
		return err
	}
	c := p.File
	b, err := c.WithDefault(name)
	if err != nil {
		return err
	}
	if c.Profile(name) == nil {
		b = append(b, fmt.Sprintf("\n[profiles.%s]\n", name)...)
	}
	if err := save(c.Path, b); err != nil {
		return err
	}
	_, err = fmt.Fprintf(opts.IO.ErrOut, "default profile: %s (%s)\n", name, c.Path)
	return err
}

func newCmdListProfiles(f *cmdutil.Factory, opts *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list-profiles",
		Short: "List the profiles, the default one marked",
		Long: `List the profiles of the config file, one a line; the default profile is
marked with "*". With --json: an object with config, default and profiles.`,
		Example: `  virtconsole config list-profiles
  virtconsole config list-profiles --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p := &opts.Profile
			if err := loadForEdit(f, p); err != nil {
				return err
			}
			c := p.File
			if opts.JSON {
				return json.NewEncoder(opts.IO.Out).Encode(struct {
					Config   string   `json:"config"`
					Default  string   `json:"default"`
					Profiles []string `json:"profiles"`
				}{c.Path, c.Default, append([]string{}, c.Names()...)})
			}
			for _, n := range c.Names() {
				mark := " "
				if n == c.Default {
					mark = "*"
				}
				fmt.Fprintf(opts.IO.Out, "%s %s\n", mark, n)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}
