package connect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// ProfileHelp says where a client command's settings come from; it is
// the Long help of "virtconsole config".
const ProfileHelp = `Client profiles keep the flags you would otherwise type every time: the proxy,
its CA, the libvirt URI, the escape key, the viewer, and where the token comes
from. They live in the client config file, $XDG_CONFIG_HOME/virtconsole/config.toml
(~/.config/virtconsole/config.toml without XDG_CONFIG_HOME), or the file of
--config FILE or ` + EnvClientConfig + ` (the daemons' server.toml is another file).

The file is TOML: a default profile and named profiles, whose keys are the long
flag names of the client commands:
  default-profile = "lab"
  [profiles.lab]
  proxy = "wss://proxy.lab:6443"
  ca-file = "/home/me/.config/virtconsole/lab-ca.pem"
  connect = "qemu+ssh://hv1/system"
  escape = "^A"
  viewer = "remote-viewer"
  token-command = "pass show vm/token"

The keys: proxy, ca-file, proxy-tls-dir, proxy-insecure, token-file,
token-command, connect, connect-tls-dir, connect-insecure, tls-min-version,
tls-cipher-suites, proxy-timeout, handshake-timeout, escape (serial), viewer
(vnc, spice) and gateway (vv). A command uses the keys it has a flag for.

Tokens are never kept in the file: a profile names a token-file, or a
token-command that prints the token on its first line of standard output, like
git's credential helpers. It runs through "sh -c" with no standard input, its
standard error shown, for at most 30s; the token never appears in any output.

Which profile: --profile NAME, else ` + EnvProfile + `, else default-profile;
none is fine. Which value: the command line wins over the environment
(` + EnvProxy + `, ` + EnvToken + ` for token-file and token-command, ` + EnvLibvirtURI + `
for connect), which wins over the profile, which wins over the flag's
default. "virtconsole config view" shows each value and where it came from.
A file that its group or others can read gets a warning, one they can write to
is refused (its token-command would run their commands); an unknown key or a
bad value is an error naming the file and line. "config set" writes paths
(ca-file, proxy-tls-dir, token-file, connect-tls-dir) as absolute paths.`

// ProfileOptions are --profile and --config of a client command, and
// what applying the profile found.
type ProfileOptions struct {
	Name   string
	Config string

	// File is the config file read by Load (empty when there is none).
	File *ClientConfig
	// Profile is the profile chosen, or nil for none; How says how it
	// was chosen ("--profile", "VIRTCONSOLE_PROFILE", "default-profile").
	Profile *Profile
	How     string

	applied map[string]bool // the keys the profile gave
}

// AddProfileFlags registers --profile and --config, with completions.
func AddProfileFlags(cmd *cobra.Command, o *ProfileOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.Name, "profile", "", "take defaults from the profile `NAME` of the client config file (env "+EnvProfile+"; see 'virtconsole config --help')")
	fl.StringVar(&o.Config, "config", "", "the client config `FILE` (default $XDG_CONFIG_HOME/virtconsole/config.toml; env "+EnvClientConfig+")")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupProfile, "profile", "config")
	_ = cmd.MarkFlagFilename("config", "toml")
	_ = cmd.RegisterFlagCompletionFunc("profile", CompleteProfiles(&o.Config))
}

// CompleteProfiles completes the names of the profiles in the config
// file (--config's, when given, which *config points to).
func CompleteProfiles(config *string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		f := &cmdutil.Factory{Getenv: os.Getenv}
		path, _ := ClientConfigFile(f, *config)
		c, err := ReadClientConfig(path, nil)
		if err != nil || path == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return c.Names(), cobra.ShellCompDirectiveNoFileComp
	}
}

// Load reads the config file and picks the profile: --profile, else
// VIRTCONSOLE_PROFILE, else the file's default-profile; none is fine.
// Warnings go to f's standard error.
func (o *ProfileOptions) Load(f *cmdutil.Factory) error {
	path, explicit := ClientConfigFile(f, o.Config)
	c := &ClientConfig{Path: path}
	if path != "" {
		var err error
		c, err = ReadClientConfig(path, func(w string) { fmt.Fprintln(f.IOStreams.ErrOut, "warning: "+w) })
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
	}
	if explicit && !c.Exists {
		return &cmdutil.FlagError{Err: fmt.Errorf("config file %s does not exist; create it with 'virtconsole config set --config %s --profile NAME KEY VALUE'", path, path)}
	}
	o.File, o.Profile = c, nil
	name, how := o.Name, "--profile"
	if name == "" {
		name, how = f.Getenv(EnvProfile), EnvProfile
	}
	if name == "" {
		name, how = c.Default, DefaultProfileKey
	}
	if name == "" {
		return nil
	}
	o.Profile, o.How = c.Profile(name), how
	if o.Profile != nil {
		return nil
	}
	if !c.Exists {
		return &cmdutil.FlagError{Err: fmt.Errorf("no profile %q (%s): config file %s does not exist; create the profile with 'virtconsole config set --profile %s proxy URL'", name, how, orNoFile(path), name)}
	}
	return &cmdutil.FlagError{Err: fmt.Errorf("no profile %q (%s) in %s%s", name, how, path, c.listing())}
}

func orNoFile(path string) string {
	if path == "" {
		return "(none: no HOME)"
	}
	return path
}

// Apply loads the profile and sets each flag of cmd that it holds a key
// for, unless the command line gave the flag or the key's environment
// variable is set. The profile's token-command goes to proxy (when not
// nil). The keys in skip are not applied (a command whose flag of that
// name means something else).
func (o *ProfileOptions) Apply(f *cmdutil.Factory, cmd *cobra.Command, proxy *ProxyOptions, skip ...string) error {
	if err := o.Load(f); err != nil {
		return err
	}
	o.applied = map[string]bool{}
	if o.Profile == nil {
		return nil
	}
	// A former name on the command line sets its flag as the flag would.
	given := map[string]bool{}
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		given[fl.Name] = true
		if a := cmdutil.AliasOf(fl); a != "" {
			given[a] = true
		}
	})
	for _, k := range ProfileKeys {
		e, ok := o.Profile.Entry(k.Name)
		fl := cmd.Flags().Lookup(k.FlagName())
		if !ok || fl == nil || given[fl.Name] || k.Env != "" && f.Getenv(k.Env) != "" || slices.Contains(skip, k.Name) {
			continue
		}
		if k.Name == "token-command" {
			if proxy == nil {
				continue
			}
			proxy.tokenCommand, proxy.tokenCommandOf = e.Values[0], o.Profile.Name
		} else if err := e.Apply(fl); err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("%s:%d: invalid value for %s: %v", o.File.Path, e.Line, k.Name, cmdutil.ValueError(fl, err))}
		}
		o.applied[k.Name] = true
	}
	return nil
}

// FromProfile reports whether the profile gave key's value.
func (o *ProfileOptions) FromProfile(key string) bool { return o.applied[key] }

// Source says where key's value comes from, as "config view" shows it:
// "flag", "env NAME", "profile NAME" or "default"; given says whether
// the command line gave it.
func (o *ProfileOptions) Source(f *cmdutil.Factory, k ProfileKey, given bool) string {
	switch {
	case given:
		return "flag"
	case k.Env != "" && f.Getenv(k.Env) != "":
		return "env " + k.Env
	case o.Profile != nil:
		if _, ok := o.Profile.Entry(k.Name); ok {
			return "profile " + o.Profile.Name
		}
	}
	return "default"
}

// runTokenCommand runs a profile's token-command and returns the first
// line it prints, trimmed. Its standard error passes through; it has no
// standard input and at most TokenCommandTimeout. Failures name the
// profile, never the command line (it may hold a secret).
func runTokenCommand(f *cmdutil.Factory, line, profile string) (string, error) {
	return runTokenCommandWithin(f, line, profile, TokenCommandTimeout)
}

func runTokenCommandWithin(f *cmdutil.Factory, line, profile string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "-c", line)
	var out bytes.Buffer
	c.Stdout = &limitWriter{w: &out, n: 64 << 10}
	c.Stderr = f.IOStreams.ErrOut
	c.WaitDelay = time.Second // a child left holding its stdout must not hang us
	err := c.Run()
	what := "token-command of profile " + profile
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return "", fmt.Errorf("%w: %s did not finish within %v", cmdutil.ErrNoToken, what, timeout)
	case errors.As(err, &ee):
		return "", fmt.Errorf("%w: %s failed (%s); run it yourself to see why", cmdutil.ErrNoToken, what, ee.ProcessState)
	case err != nil:
		return "", fmt.Errorf("%w: %s: %v", cmdutil.ErrNoToken, what, err)
	}
	first, _, _ := strings.Cut(out.String(), "\n")
	tok := strings.TrimSpace(first)
	if tok == "" {
		return "", fmt.Errorf("%w: %s printed no token on its first line", cmdutil.ErrNoToken, what)
	}
	return tok, nil
}

// limitWriter keeps the first n bytes and discards the rest.
type limitWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
