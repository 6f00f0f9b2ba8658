package connect

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
)

// profileFactory is a Factory whose environment is env, with HOME an
// empty directory unless env says otherwise, and whose stderr is errOut.
func profileFactory(t *testing.T, env map[string]string, errOut *bytes.Buffer) *cmdutil.Factory {
	t.Helper()
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, errOut))
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = t.TempDir()
	}
	f.Getenv = func(k string) string { return env[k] }
	return f
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const twoProfiles = `# my profiles
default-profile = "lab"

[profiles.lab]
proxy = "wss://lab.example:6443" # the lab
ca-file = "/lab/ca.pem"
connect = "qemu+ssh://hv1/system"
proxy-timeout = "7s"
token-file = "/lab/token"

[profiles.other]
proxy = "wss://other.example:6443"
token-command = "echo t"
tls-cipher-suites = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
`

// TestProfilePrecedence: flags > environment > profile > defaults, the
// profile chosen by --profile > VIRTCONSOLE_PROFILE > default-profile.
func TestProfilePrecedence(t *testing.T) {
	cfg := writeConfig(t, twoProfiles)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		flags []string
		proxy string
		uri   string
		ca    string
		mode  Mode
	}{
		{"default profile", map[string]string{EnvClientConfig: cfg}, nil, "wss://lab.example:6443/websockify", "qemu+ssh://hv1/system", "/lab/ca.pem", ProxyToken},
		{"--profile", map[string]string{EnvClientConfig: cfg}, []string{"--profile", "other"}, "wss://other.example:6443/websockify", "", "", ProxyToken},
		{"env profile", map[string]string{EnvClientConfig: cfg, EnvProfile: "other"}, nil, "wss://other.example:6443/websockify", "", "", ProxyToken},
		{"--profile beats env", map[string]string{EnvClientConfig: cfg, EnvProfile: "other"}, []string{"--profile", "lab"}, "wss://lab.example:6443/websockify", "qemu+ssh://hv1/system", "/lab/ca.pem", ProxyToken},
		{"flag beats profile", map[string]string{EnvClientConfig: cfg}, []string{"--proxy", "wss://flag:1", "-c", "qemu:///system", "--ca-file", "/flag.pem"}, "wss://flag:1/websockify", "qemu:///system", "/flag.pem", ProxyToken},
		{"env beats profile", map[string]string{EnvClientConfig: cfg, EnvProxy: "wss://env:1", EnvLibvirtURI: "qemu:///session"}, nil, "wss://env:1/websockify", "", "/lab/ca.pem", ProxyToken},
		{"--config", map[string]string{}, []string{"--config", cfg}, "wss://lab.example:6443/websockify", "qemu+ssh://hv1/system", "/lab/ca.pem", ProxyToken},
		{"XDG_CONFIG_HOME", map[string]string{"XDG_CONFIG_HOME": filepath.Dir(filepath.Dir(cfg))}, nil, "", "", "", 0},
		{"no file", map[string]string{}, nil, "", "", "", 0},
		{"target: the profile's proxy does not count", map[string]string{EnvClientConfig: cfg}, []string{"--target", "127.0.0.1:5900"}, "wss://lab.example:6443", "qemu+ssh://hv1/system", "/lab/ca.pem", DirectTarget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := profileFactory(t, tc.env, &bytes.Buffer{})
			o, err := check(t, f, protocols.KindVNC, "", tc.flags...)
			if tc.mode == 0 {
				if err == nil || !strings.Contains(err.Error(), "no console given") {
					t.Fatalf("Check: %v, want no console given", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if o.Mode() != tc.mode || o.Proxy.URL != tc.proxy || o.Domain.URI != tc.uri || o.Proxy.CAFile != tc.ca {
				t.Errorf("mode %v proxy %q uri %q ca %q; want %v %q %q %q", o.Mode(), o.Proxy.URL, o.Domain.URI, o.Proxy.CAFile, tc.mode, tc.proxy, tc.uri, tc.ca)
			}
		})
	}
}

// TestProfileXDG: the default file is $XDG_CONFIG_HOME/virtconsole/
// config.toml, else ~/.config/virtconsole/config.toml.
func TestProfileXDG(t *testing.T) {
	for _, v := range []string{"XDG_CONFIG_HOME", "HOME"} {
		dir := t.TempDir()
		sub := filepath.Join(dir, "virtconsole")
		if v == "HOME" {
			sub = filepath.Join(dir, ".config", "virtconsole")
		}
		if err := os.MkdirAll(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "config.toml"), []byte(twoProfiles), 0o600); err != nil {
			t.Fatal(err)
		}
		f := profileFactory(t, map[string]string{v: dir}, &bytes.Buffer{})
		o, err := check(t, f, protocols.KindSerial, "")
		if err != nil || o.Proxy.URL != "wss://lab.example:6443/websockify" {
			t.Errorf("%s: proxy %q, %v", v, o.Proxy.URL, err)
		}
	}
}

// TestProfileKeysApplyToFlags: every key but token-command is a client
// command's flag of the same name, and a value of every key applies.
func TestProfileKeysApplyToFlags(t *testing.T) {
	cmdVNC, _ := command(protocols.KindVNC)
	AddLocalFlags(cmdVNC, &LocalOptions{}, "vnc")
	cmdSerial, _ := command(protocols.KindSerial)
	cmdSerial.Flags().String("escape", "^]", "")
	// vv's own flag (its test applies a profile's gateway).
	cmdVV, _ := command(protocols.KindSPICE)
	cmdVV.Flags().String("gateway", "", "")
	for _, k := range ProfileKeys {
		if k.Name == "token-command" {
			continue
		}
		if cmdVNC.Flags().Lookup(k.Name) == nil && cmdSerial.Flags().Lookup(k.Name) == nil && cmdVV.Flags().Lookup(k.Name) == nil {
			t.Errorf("key %s is no client command's flag", k.Name)
		}
	}
}

// TestProfileErrors: the file's mistakes are one-line errors naming the
// file and line; an unknown profile lists the profiles.
func TestProfileErrors(t *testing.T) {
	for _, tc := range []struct{ text, flag, want string }{
		{"[profiles.a]\nproxy = \"wss://a:1\"\nbogus = 1\n", "", ":3: unknown key \"bogus\" in profile a; the keys are proxy, ca-file"},
		{"[profiles.a]\ntoken = \"s3cret\"\n", "", ":2: tokens are not kept in the config file: use token-file FILE or token-command COMMAND"},
		{"[profiles.a]\nproxy = \"https://a:1\"\n", "", ":2: invalid value for proxy: proxy URL \"https://a:1\": use wss://a:1"},
		{"[profiles.a]\nproxy-insecure = \"yes\"\n", "", ":2: invalid value for proxy-insecure: want true or false"},
		{"[profiles.a]\nproxy-timeout = \"soon\"\n", "", ":2: invalid value for proxy-timeout: \"soon\": want a positive duration"},
		{"[profiles.a]\nescape = \"^^^\"\n", "", ":2: invalid value for escape"},
		{"[profiles.a]\ntoken-file = \"/t\"\ntoken-command = \"echo\"\n", "", ":3: profile a has token-file and token-command: keep one"},
		{"default-profile = \"b\"\n[profiles.a]\n", "", ":1: default-profile \"b\": no such profile; the profiles are a"},
		{"proxy = \"wss://a:1\"\n", "", ":1: unknown key \"proxy\": want default-profile at the top"},
		{"[server]\nlisten = \":1\"\n", "", ":1: unknown table [server]: want [profiles.NAME]"},
		{"[profiles.a]\nproxy = \"wss://a:1\"\nproxy = \"wss://b:1\"\n", "", ":3:1: "},
		{"[profiles.a]\n[profiles.b]\n", "c", `no profile "c" (--profile) in `},
	} {
		cfg := writeConfig(t, tc.text)
		f := profileFactory(t, map[string]string{EnvClientConfig: cfg}, &bytes.Buffer{})
		var flags []string
		if tc.flag != "" {
			flags = []string{"--profile", tc.flag}
		}
		_, err := check(t, f, protocols.KindSerial, "", flags...)
		var fe *cmdutil.FlagError
		if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want a usage error with %q", tc.text, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), cfg) {
			t.Errorf("%q: %v does not name the file", tc.text, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the token: %v", err)
		}
	}
	// A profile that the file lacks lists the profiles.
	cfg := writeConfig(t, twoProfiles)
	f := profileFactory(t, map[string]string{EnvClientConfig: cfg, EnvProfile: "nope"}, &bytes.Buffer{})
	if _, err := check(t, f, protocols.KindSerial, ""); err == nil || !strings.HasSuffix(err.Error(), "the profiles are lab, other") {
		t.Errorf("unknown profile: %v", err)
	}
}

// TestProfileExposedWarning: a config file its group or others can read
// gets one warning line naming it.
func TestProfileExposedWarning(t *testing.T) {
	cfg := writeConfig(t, twoProfiles)
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	f := profileFactory(t, map[string]string{EnvClientConfig: cfg}, &errOut)
	if _, err := check(t, f, protocols.KindSerial, ""); err != nil {
		t.Fatal(err)
	}
	want := "warning: config file " + cfg + " is readable by others (mode 0644); chmod 600 it\n"
	if errOut.String() != want {
		t.Errorf("stderr %q, want %q", errOut.String(), want)
	}
	// Writable by others: refused, since its token-command would run.
	if err := os.Chmod(cfg, 0o620); err != nil {
		t.Fatal(err)
	}
	_, err := check(t, f, protocols.KindSerial, "")
	if want := "config file " + cfg + " is writable by others than you (mode 0620); chmod 600 it"; err == nil || err.Error() != want {
		t.Errorf("mode 0620: %v, want %q", err, want)
	}
}

// TestTokenCommand: the first line of the command's output, trimmed, is
// the token; the environment's token and --token-file win over it; a
// failure names the profile and the exit status, never the command.
func TestTokenCommand(t *testing.T) {
	for _, tc := range []struct {
		command, flagFile, env, want, err string
	}{
		{command: "printf '  s3cret-1 \\nsecond\\n'; echo noise >&2", want: "s3cret-1"},
		{command: "echo s3cret-2", env: "from-env", want: "from-env"},
		{command: "echo s3cret-3", flagFile: "from-file", want: "from-file"},
		{command: "echo s3cret-4 >&2; exit 3", err: "no token: token-command of profile p failed (exit status 3); run it yourself to see why"},
		{command: "true", err: "no token: token-command of profile p printed no token on its first line"},
	} {
		cfg := writeConfig(t, "[profiles.p]\ntoken-command = \""+strings.ReplaceAll(tc.command, `\`, `\\`)+"\"\n")
		var errOut bytes.Buffer
		env := map[string]string{EnvClientConfig: cfg, EnvProfile: "p", EnvToken: tc.env}
		f := profileFactory(t, env, &errOut)
		flags := []string{"--proxy", "wss://p:1"}
		if tc.flagFile != "" {
			p := filepath.Join(t.TempDir(), "tok")
			if err := os.WriteFile(p, []byte(tc.flagFile+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			flags = append(flags, "--token-file", p)
		}
		o, err := check(t, f, protocols.KindSerial, "", flags...)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := o.Proxy.ReadToken(f)
		switch {
		case tc.err != "":
			if err == nil || err.Error() != tc.err || !errors.Is(err, cmdutil.ErrNoToken) {
				t.Errorf("%q: %v, want %q", tc.command, err, tc.err)
			}
		case err != nil || tok != tc.want:
			t.Errorf("%q: %q, %v; want %q", tc.command, tok, err, tc.want)
		}
		if strings.Contains(errOut.String(), "noise") != strings.Contains(tc.command, "noise") {
			t.Errorf("%q: stderr %q", tc.command, errOut.String())
		}
	}
}

// TestTokenCommandTimeout: a command that does not finish is stopped.
func TestTokenCommandTimeout(t *testing.T) {
	f := profileFactory(t, map[string]string{}, &bytes.Buffer{})
	start := time.Now()
	_, err := runTokenCommandWithin(f, "sleep 30", "p", 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not finish within 200ms") || time.Since(start) > 5*time.Second {
		t.Errorf("%v after %v", err, time.Since(start))
	}
}

// TestConfigEdit: set keeps the other keys, profiles and comments, and
// the result parses to what was set.
func TestConfigEdit(t *testing.T) {
	c, err := ParseClientConfig("/c.toml", []byte(twoProfiles))
	if err != nil {
		t.Fatal(err)
	}
	k, _ := LookupProfileKey("proxy")
	e, err := k.Entry("wss://new:1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.WithValue("lab", e)
	if err != nil {
		t.Fatal(err)
	}
	k, _ = LookupProfileKey("escape")
	e, _ = k.Entry("^A")
	if c, err = ParseClientConfig("/c.toml", b); err != nil {
		t.Fatal(err)
	}
	if b, err = c.WithValue("other", e); err != nil {
		t.Fatal(err)
	}
	if c, err = ParseClientConfig("/c.toml", b); err != nil {
		t.Fatal(err)
	}
	if b, err = c.WithValue("third", e); err != nil {
		t.Fatal(err)
	}
	if c, err = ParseClientConfig("/c.toml", b); err != nil {
		t.Fatal(err)
	}
	if b, err = c.WithDefault("other"); err != nil {
		t.Fatal(err)
	}
	want := strings.NewReplacer(`"lab"`, `"other"`, "wss://lab.example:6443", "wss://new:1",
		"tls-cipher-suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]\n", "tls-cipher-suites = [\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]\nescape = \"^A\"\n").Replace(twoProfiles) +
		"\n[profiles.third]\nescape = \"^A\"\n"
	if string(b) != want {
		t.Errorf("edited file:\n%s\nwant:\n%s", b, want)
	}
}

// TestProfileCommandKeys: escape and viewer, keys of one command each,
// reach the commands that have them, and a flag still wins.
func TestProfileCommandKeys(t *testing.T) {
	cfg := writeConfig(t, "[profiles.p]\nproxy = \"wss://p:1\"\nescape = \"^A\"\nviewer = \"remote-viewer\"\nproxy-insecure = true\n")
	f := profileFactory(t, map[string]string{EnvClientConfig: cfg, EnvProfile: "p"}, &bytes.Buffer{})
	for _, tc := range []struct {
		flags        []string
		escape, view string
	}{
		{nil, "^A", "remote-viewer"},
		{[]string{"--escape", "^B", "--viewer", "auto"}, "^B", "auto"},
	} {
		cmd, o := command(protocols.KindVNC)
		var local LocalOptions
		AddLocalFlags(cmd, &local, "vnc")
		escape := cmd.Flags().String("escape", "^]", "")
		if err := cmd.Flags().Parse(tc.flags); err != nil {
			t.Fatal(err)
		}
		if err := o.Check(f, cmd, nil); err != nil {
			t.Fatal(err)
		}
		if *escape != tc.escape || local.Viewer != tc.view || !o.Proxy.Insecure {
			t.Errorf("%v: escape %q viewer %q insecure %v; want %q %q true", tc.flags, *escape, local.Viewer, o.Proxy.Insecure, tc.escape, tc.view)
		}
	}
}
