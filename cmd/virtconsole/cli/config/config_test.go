package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
)

func newCmd(f *cmdutil.Factory) *cobra.Command { return NewCmdConfig(f) }

func TestConfigHelp(t *testing.T) {
	cmdtest.CheckHelp(t, newCmd(cmdutil.NewFactory(cmdutil.Test(nil, nil, nil))))
}

// TestConfigSetGet: set creates the file (0600) in a new directory
// (0700), makes the first profile the default, keeps the others, and
// refuses tokens, unknown keys and bad values without writing.
func TestConfigSetGet(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "new", "config.toml")
	run := func(args ...string) (string, string, error) {
		return cmdtest.Run(t, newCmd, append(args, "--config", cfg)...)
	}
	for _, args := range [][]string{
		{"set", "proxy", "wss://a:1", "--profile", "a"},
		{"set", "viewer", "auto", "--profile", "b"},
		{"set", "proxy-insecure", "true"}, // the default profile: a
		{"set", "ca-file", "ca.pem", "--profile", "b"},
	} {
		if _, stderr, err := run(args...); err != nil {
			t.Fatalf("%v: %v (%s)", args, err, stderr)
		}
	}
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{cfg, 0o600}, {filepath.Dir(cfg), 0o700}} {
		if fi, err := os.Stat(p.path); err != nil || fi.Mode().Perm() != p.mode {
			t.Fatalf("%s: %v %v", p.path, err, fi)
		}
	}
	abs, err := filepath.Abs("ca.pem")
	if err != nil {
		t.Fatal(err)
	}
	want := "default-profile = \"a\"\n[profiles.a]\nproxy = \"wss://a:1\"\nproxy-insecure = true\n\n[profiles.b]\nviewer = \"auto\"\nca-file = \"" + abs + "\"\n"
	if b, _ := os.ReadFile(cfg); string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
	for args, out := range map[string]string{"get proxy": "wss://a:1\n", "get viewer --profile b": "auto\n", "get default-profile": "a\n", "list-profiles": "* a\n  b\n"} {
		if stdout, _, err := run(strings.Fields(args)...); err != nil || stdout != out {
			t.Errorf("%s: %q, %v; want %q", args, stdout, err, out)
		}
	}
	if _, _, err := run("get", "viewer"); cmdutil.ExitCode(err) != cmdutil.ExitNotFound {
		t.Errorf("get of a key the profile lacks: %v (exit %d)", err, cmdutil.ExitCode(err))
	}
	for _, tc := range []struct{ args, want string }{
		{"set token s3cret", "tokens are not kept in the config file: set token-file FILE or token-command COMMAND"},
		{"set colour blue", `unknown key "colour"; the keys are proxy, ca-file`},
		{"set proxy http://a:1", `proxy: proxy URL "http://a:1": use ws://a:1`},
		{"set escape ctrl", "escape: "},
		{"set proxy-timeout 0s", `proxy-timeout: "0s": want a positive duration`},
		{"set proxy wss://x:1 --profile a.b", `profile name "a.b"`},
	} {
		_, _, err := run(strings.Fields(tc.args)...)
		if err == nil || cmdutil.ExitCode(err) != cmdutil.ExitUsage || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(cfg); string(b) != want {
		t.Errorf("a refused set changed the file:\n%s", b)
	}
	if _, _, err := run("use-profile", "c"); err != nil {
		t.Fatal(err)
	}
	if stdout, _, _ := run("list-profiles"); stdout != "  a\n  b\n* c\n" {
		t.Errorf("after use-profile c: %q", stdout)
	}
}

// TestConfigSetFirst: in a file with no profile, "config set" without
// --profile makes the profile "default", which becomes the default, so
// that one command is all a client needs; once profiles exist and none
// is the default, it asks which.
func TestConfigSetFirst(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.toml")
	run := func(args ...string) (string, string, error) {
		return cmdtest.Run(t, newCmd, append(args, "--config", cfg)...)
	}
	if _, stderr, err := run("set", "proxy", "wss://a:1"); err != nil {
		t.Fatalf("first set without --profile: %v (%s)", err, stderr)
	}
	want := "default-profile = \"" + FirstProfile + "\"\n[profiles." + FirstProfile + "]\nproxy = \"wss://a:1\"\n"
	if b, _ := os.ReadFile(cfg); string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
	if stdout, _, err := run("get", "proxy"); err != nil || stdout != "wss://a:1\n" {
		t.Errorf("get proxy: %q, %v", stdout, err)
	}

	other := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(other, []byte("[profiles.x]\nproxy = \"wss://x:1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := cmdtest.Run(t, newCmd, "set", "viewer", "auto", "--config", other)
	if cmdutil.ExitCode(err) != cmdutil.ExitUsage || !strings.Contains(err.Error(), "which profile? give --profile NAME (profiles: x)") {
		t.Errorf("set without --profile or a default among profiles: %v", err)
	}
}
