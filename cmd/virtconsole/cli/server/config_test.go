package server

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// proxyRun is one run of "server proxy" in process: the options its run
// function got, what it printed, and its error.
type proxyRun struct {
	opts        *ProxyOptions
	out, errOut string
	err         error
}

// runProxyCmd runs "server proxy" with args, the environment env (and
// nothing else) and, unless it is "", a config file holding text, named
// by --config. No default config file is read.
func runProxyCmd(t *testing.T, env map[string]string, text string, args ...string) proxyRun {
	t.Helper()
	old := DefaultConfigFile
	DefaultConfigFile = filepath.Join(t.TempDir(), "absent.toml")
	t.Cleanup(func() { DefaultConfigFile = old })
	if text != "" {
		args = append(args, "--config", writeConfig(t, text))
	}
	var out, errOut bytes.Buffer
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &errOut))
	f.Getenv = func(k string) string { return env[k] }
	var r proxyRun
	cmd := NewCmdProxy(f, func(_ context.Context, o *ProxyOptions) error {
		r.opts = o
		f.Logger().Info("running", "listen", o.Listen)
		f.Logger().Debug("details")
		return nil
	})
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	r.err = cmd.Execute()
	r.out, r.errOut = out.String(), errOut.String()
	return r
}

// writeConfig writes a config file and returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "server.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigPrecedence: each setting comes from the command line, else
// the environment, else the daemon's table of the file, else the default;
// the other daemons' tables are not its business.
func TestConfigPrecedence(t *testing.T) {
	const file = `
[server]
listen = "0.0.0.0:1"        # another daemon's: not read by the proxy
connect = ["qemu:///system"]

[proxy]
listen = "127.0.0.1:7000"
max-sessions = 10
max-failures = 7
drain-timeout = "5s"
allowed-origin = ["https://a.example", "https://b.example"]
trust-forwarded = true

[resolver]
tokens = "/etc/virtconsole/tokens.json"
`
	env := map[string]string{"VIRTCONSOLE_MAX_SESSIONS": "20", "VIRTCONSOLE_DRAIN_TIMEOUT": "6s", "VIRTCONSOLE_HANDSHAKE_TIMEOUT": ""}
	r := runProxyCmd(t, env, file, "--drain-timeout", "7s")
	if r.err != nil {
		t.Fatal(r.err)
	}
	o := r.opts
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"listen (file)", o.Listen, "127.0.0.1:7000"},
		{"max-failures (file)", o.MaxFailures, 7},
		{"max-sessions (env over file)", o.MaxSessions, 20},
		{"drain-timeout (flag over env and file)", o.DrainTimeout, 7 * time.Second},
		{"handshake-timeout (default; an empty variable is unset)", o.HandshakeTimeout, 15 * time.Second},
		{"trust-forwarded (file)", o.TrustForwarded, true},
		{"max-conns-per-client (default)", o.MaxConnsPerClient, 100},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if want := []string{"https://a.example", "https://b.example"}; !slices.Equal(o.AllowedOrigins, want) {
		t.Errorf("allowed-origin = %q, want %q", o.AllowedOrigins, want)
	}

	// A repeatable flag on the command line replaces the file's array;
	// the environment gives it one value.
	r = runProxyCmd(t, map[string]string{"VIRTCONSOLE_ALLOWED_ORIGIN": "https://env.example"}, file)
	if want := []string{"https://env.example"}; r.err != nil || !slices.Equal(r.opts.AllowedOrigins, want) {
		t.Errorf("env: allowed-origin = %q (%v), want %q", r.opts.AllowedOrigins, r.err, want)
	}
	r = runProxyCmd(t, nil, file, "--allowed-origin", "https://flag.example")
	if want := []string{"https://flag.example"}; r.err != nil || !slices.Equal(r.opts.AllowedOrigins, want) {
		t.Errorf("flag: allowed-origin = %q (%v), want %q", r.opts.AllowedOrigins, r.err, want)
	}

	// No file at all: defaults.
	r = runProxyCmd(t, nil, "")
	if r.err != nil || r.opts.Listen != "127.0.0.1:6443" || r.opts.MaxSessions != 1000 {
		t.Errorf("no file: %+v, %v", r.opts, r.err)
	}
}

// TestConfigFileLocation: --config, else VIRTCONSOLE_CONFIG, else the
// default file when it exists; a file asked for must exist.
func TestConfigFileLocation(t *testing.T) {
	def := writeConfig(t, "[proxy]\nlisten = \"127.0.0.1:1001\"\n")
	named := writeConfig(t, "[proxy]\nlisten = \"127.0.0.1:1002\"\n")
	old := DefaultConfigFile
	t.Cleanup(func() { DefaultConfigFile = old })
	for _, tc := range []struct {
		env     map[string]string
		args    []string
		want    string
		wantErr string
	}{
		{nil, nil, "127.0.0.1:1001", ""},
		{map[string]string{"VIRTCONSOLE_CONFIG": named}, nil, "127.0.0.1:1002", ""},
		{map[string]string{"VIRTCONSOLE_CONFIG": def}, []string{"--config", named}, "127.0.0.1:1002", ""},
		{nil, []string{"--config", named + ".absent"}, "", "config file " + named + ".absent: no such file or directory; give an existing file to --config"},
		{map[string]string{"VIRTCONSOLE_CONFIG": "/nonexistent/x.toml"}, nil, "", "config file /nonexistent/x.toml: no such file"},
	} {
		var out, errOut bytes.Buffer
		f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &errOut))
		f.Getenv = func(k string) string { return tc.env[k] }
		DefaultConfigFile = def
		var got string
		cmd := NewCmdProxy(f, func(_ context.Context, o *ProxyOptions) error { got = o.Listen; return nil })
		cmd.SetArgs(tc.args)
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		err := cmd.Execute()
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || cmdutil.ExitCode(err) != cmdutil.ExitUsage {
				t.Errorf("%v %v: error %v (exit %d), want %q (exit 1)", tc.env, tc.args, err, cmdutil.ExitCode(err), tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("%v %v: listen %q, %v; want %q", tc.env, tc.args, got, err, tc.want)
		}
	}
	// No default file: no error.
	DefaultConfigFile = filepath.Join(t.TempDir(), "absent.toml")
	cmd := NewCmdProxy(testFactory(&bytes.Buffer{}), func(context.Context, *ProxyOptions) error { return nil })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Errorf("no default file: %v", err)
	}
}

// TestConfigErrors: a syntax error, an unknown key or table, a value of
// the wrong type or that the flag refuses is one line naming the file and
// the line, and a usage error (exit 1); so is a bad environment variable.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		text string
		env  map[string]string
		want string // after "FILE:"
	}{
		{"[proxy]\nlisten = \"x\n", nil, `2:12: basic strings cannot have new lines`},
		{"[proxy]\nlisten = \"a\"\nlisten = \"b\"\n", nil, `3:1: key listen is already defined`},
		{"[proxy]\n\n  tls-dri = \"/x\"\n", nil, `3: unknown key "tls-dri" in [proxy]; the keys are the flags of 'proxy --help'`},
		{"[proxy]\nconfig = \"/x\"\n", nil, `2: unknown key "config" in [proxy]`},
		{"[proxy]\ntls-dir.x = \"/x\"\n", nil, `2: unknown key "tls-dir.x" in [proxy]`},
		{"listen = \"x\"\n", nil, `1: "listen" is outside any table: put it under [proxy] (or [server], [resolver])`},
		{"[proxy]\n[prxy]\n", nil, `2: unknown table [prxy]: want [server], [proxy], [resolver]`},
		{"[[proxy]]\n", nil, `1: unknown table [proxy]`},
		{"[proxy]\nmax-sessions = \"ten\"\n", nil, `2: invalid value for max-sessions: want an integer, not a string (in quotes)`},
		{"[proxy]\nlisten = 6443\n", nil, `2: invalid value for listen: want a string (in quotes), not an integer`},
		{"[proxy]\ntrust-forwarded = \"yes\"\n", nil, `2: invalid value for trust-forwarded: want true or false, not a string (in quotes)`},
		{"[proxy]\nlisten = [\"a\", \"b\"]\n", nil, `2: invalid value for listen: want one value, not an array`},
		{"[proxy]\nallowed-origin = [1]\n", nil, `2: invalid value for allowed-origin: want a string (in quotes), not an integer`},
		{"[proxy]\nallowed-origin = {a = 1}\n", nil, `2: invalid value for allowed-origin: want a string, number, boolean or array of them, not inlinetable`},
		{"[proxy]\ndrain-timeout = \"soon\"\n", nil, `2: invalid value for drain-timeout: must be a duration like "30s" or "5m"`},
		{"[proxy]\nlog-level = \"loud\"\n", nil, `2: invalid value for log-level: want debug, info, warn, error`},
		{"[proxy]\nmax-sessions = 07\n", nil, `2:16: integers cannot have leading zeroes`},
		{"[proxy]\nmax-sessions = 9999999999999999999999\n", nil, `2:16: decimal number is too large to fit in a 64-bit signed integer`},

		// Checked even where the environment overrides it.
		{"[proxy]\nmax-sessions = \"10\"\n", map[string]string{"VIRTCONSOLE_MAX_SESSIONS": "20"}, `2: invalid value for max-sessions: want an integer, not a string (in quotes)`},
		{"[proxy]\n# fine\nlisten = \"127.0.0.1:1\"\n", map[string]string{"VIRTCONSOLE_MAX_SESSIONS": "many"}, ""},
	} {
		r := runProxyCmd(t, tc.env, tc.text)
		if r.err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		msg := r.err.Error()
		if tc.want == "" {
			if want := `VIRTCONSOLE_MAX_SESSIONS="many": invalid value for --max-sessions: want an integer`; msg != want {
				t.Errorf("env: error %q, want %q...", msg, want)
			}
		} else if !regexp.MustCompile(`^/\S+/server\.toml:` + regexp.QuoteMeta(tc.want)).MatchString(msg) {
			t.Errorf("%q: error %q, want FILE:%s", tc.text, msg, tc.want)
		}
		if strings.Contains(msg, "\n") || cmdutil.ExitCode(r.err) != cmdutil.ExitUsage {
			t.Errorf("%q: error %q (exit %d): want one line, exit 1", tc.text, msg, cmdutil.ExitCode(r.err))
		}
		if r.opts != nil {
			t.Errorf("%q: the daemon ran", tc.text)
		}
	}
}

// TestConfigDeprecatedAlias: a former flag name is no key of the file
// (the file is new: it has only current names), and keeps working on the
// command line.
func TestConfigDeprecatedAlias(t *testing.T) {
	old := DefaultConfigFile
	DefaultConfigFile = filepath.Join(t.TempDir(), "absent.toml")
	t.Cleanup(func() { DefaultConfigFile = old })
	run := func(args ...string) (*ProxyOptions, error) {
		var got *ProxyOptions
		cmd := NewCmdServer(testFactory(&bytes.Buffer{}), func(_ context.Context, o *ProxyOptions) error { got = o; return nil })
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		cmd.SilenceErrors, cmd.SilenceUsage = true, true
		return got, cmd.Execute()
	}
	_, err := run("--config", writeConfig(t, "[server]\nreusable-tokens = true\n"))
	if err == nil || !strings.HasSuffix(err.Error(), `server.toml:2: "reusable-tokens" is a former name: use --single-use=false`) {
		t.Errorf("former name in the file: %v", err)
	}
	got, err := run("--config", writeConfig(t, "[server]\nsingle-use = true\n"), "--reusable-tokens")
	if err != nil || got.SingleUse {
		t.Errorf("--reusable-tokens over the file's single-use: %+v, %v", got, err)
	}
}

// TestPrintConfig: --print-config prints the effective settings as a
// [table] the file would take, each with its source, secrets masked; with
// --json, an object; the daemon does not run.
func TestPrintConfig(t *testing.T) {
	file := "[proxy]\nresolver = \"https://admin:hunter2@resolver.example:8081/consoleresolver/\"\nmax-sessions = 10\nallowed-origin = [\"https://a.example\"]\n"
	r := runProxyCmd(t, map[string]string{"VIRTCONSOLE_TLS_DIR": "/etc/pki/virtconsole"}, file, "--print-config", "--listen", "127.0.0.1:1")
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.opts != nil {
		t.Error("--print-config ran the daemon")
	}
	if strings.Contains(r.out, "hunter2") {
		t.Errorf("the resolver's password is shown:\n%s", r.out)
	}
	for _, want := range []string{
		"[proxy]\n",
		`resolver = "https://admin:xxxxx@resolver.example:8081/consoleresolver/" # /`,
		`listen = "127.0.0.1:1" # flag`,
		`tls-dir = "/etc/pki/virtconsole" # env VIRTCONSOLE_TLS_DIR`,
		`max-sessions = 10 # /`,
		`allowed-origin = ["https://a.example"] # /`,
		`drain-timeout = "30s" # default`,
		`listen-insecure = false # default`,
		`log-level = "info" # default`,
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %q:\n%s", want, r.out)
		}
	}
	for _, absent := range []string{"print-config", "json", "config =", "help"} {
		if strings.Contains(r.out, "\n"+absent) {
			t.Errorf("output has %q, which is no setting:\n%s", absent, r.out)
		}
	}
	// What it prints is a config file the daemon takes as it is.
	cfg := r.out
	if r := runProxyCmd(t, nil, cfg); r.err != nil || r.opts.Listen != "127.0.0.1:1" || r.opts.MaxSessions != 10 {
		t.Errorf("the printed settings as a config file: %+v, %v", r.opts, r.err)
	}

	r = runProxyCmd(t, nil, file, "--print-config", "--json")
	if r.err != nil {
		t.Fatal(r.err)
	}
	var j struct {
		Config   string
		Table    string
		Settings map[string]any
		Sources  map[string]string
	}
	if err := json.Unmarshal([]byte(r.out), &j); err != nil {
		t.Fatalf("%v:\n%s", err, r.out)
	}
	if j.Table != "proxy" || !strings.HasSuffix(j.Config, "server.toml") || j.Settings["max-sessions"] != 10.0 ||
		j.Settings["resolver"] != "https://admin:xxxxx@resolver.example:8081/consoleresolver/" || j.Sources["max-sessions"] != j.Config+":3" ||
		j.Sources["listen"] != "default" || j.Settings["trust-forwarded"] != false {
		t.Errorf("--json: %+v", j)
	}

	if r := runProxyCmd(t, nil, "", "--json"); r.err == nil || r.err.Error() != "--json goes with --print-config" {
		t.Errorf("--json alone: %v", r.err)
	}
}

// TestMask: a SecretValue flag is masked whole, a SecretURL flag's
// password only; other flags are shown.
func TestMask(t *testing.T) {
	cmd := NewCmdProxy(testFactory(&bytes.Buffer{}), nil)
	fl := cmd.Flags()
	fl.String("test-password", "", "")
	cmdutil.MarkSecret(fl, cmdutil.SecretValue, "test-password")
	for _, c := range []struct{ flag, value, want string }{
		{"test-password", "s3cret", "********"},
		{"test-password", "", ""},
		{"resolver", "https://u:p@h/x", "https://u:xxxxx@h/x"},
		{"resolver", "https://h/x", "https://h/x"},
		{"resolver", "://u:p@h", "********"},
		{"tokens", "/etc/virtconsole/tokens.json", "/etc/virtconsole/tokens.json"},
	} {
		if got := mask(fl.Lookup(c.flag), c.value); got != c.want {
			t.Errorf("mask(%s, %q) = %q, want %q", c.flag, c.value, got, c.want)
		}
	}
}

// TestLogFlags: --log-format json writes one JSON object a line,
// --log-level hides what is below it; both also come from the
// environment and the file like any setting.
func TestLogFlags(t *testing.T) {
	r := runProxyCmd(t, nil, "", "--log-format", "json", "--log-level", "debug")
	if r.err != nil {
		t.Fatal(r.err)
	}
	lines := strings.Split(strings.TrimSpace(r.errOut), "\n")
	if len(lines) != 2 {
		t.Fatalf("want the info and the debug line:\n%s", r.errOut)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil || m["level"] == nil {
			t.Errorf("not a JSON log line: %q (%v)", l, err)
		}
	}
	r = runProxyCmd(t, map[string]string{"VIRTCONSOLE_LOG_LEVEL": "warn"}, "[proxy]\nlog-level = \"debug\"\n")
	if r.err != nil || r.errOut != "" {
		t.Errorf("VIRTCONSOLE_LOG_LEVEL=warn: %v, logged %q", r.err, r.errOut)
	}
	r = runProxyCmd(t, nil, "[proxy]\nlog-level = \"info\"\n")
	if r.err != nil || !strings.HasPrefix(r.errOut, "time=") || !strings.Contains(r.errOut, "level=INFO msg=running") || strings.Contains(r.errOut, "details") {
		t.Errorf("text at info: %v, logged %q", r.err, r.errOut)
	}
	r = runProxyCmd(t, nil, "", "--log-format", "xml")
	if r.err == nil || !strings.Contains(r.err.Error(), `invalid argument "xml" for "--log-format" flag: want text, json`) || cmdutil.ExitCode(r.err) != cmdutil.ExitUsage {
		t.Errorf("--log-format xml: %v", r.err)
	}
}

// FuzzParseConfig: any file content is entries or an error naming the
// file, never a panic; an entry names a line of the file and has a value
// unless it is an array.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"[proxy]\nlisten = \"127.0.0.1:6443\"\nallowed-origin = [\"a\", 'b']\nmax-sessions = 1_000\n",
		"[server]\nconnect = []\n[proxy]\ntrust-forwarded = true\n[resolver]\ntokens = \"\"\"x\"\"\"\n",
		"[proxy]\n\"quoted key\" = 1\na.b = { c = 1 }\n",
		"x = 1\n", "[[proxy]]\n", "[proxy]\nlisten = \"x\n", "\ufeff[proxy]\r\nlisten = 1979-05-27\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := parseConfig("/cfg.toml", b, "proxy")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "/cfg.toml:") {
				t.Fatalf("error without the file: %v", err)
			}
			return
		}
		lines := bytes.Count(b, []byte("\n")) + 1
		for _, e := range entries {
			if e.Line < 1 || e.Line > lines {
				t.Fatalf("%q at line %d of %d", e.Key, e.Line, lines)
			}
			if !e.Array && len(e.Values) != 1 || len(e.Values) != len(e.Kinds) {
				t.Fatalf("%q: values %q, kinds %v", e.Key, e.Values, e.Kinds)
			}
		}
	})
}
