package input

import (
	"net"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
)

func keysCmd(f *cmdutil.Factory) *cobra.Command { return NewCmdKeys(f, nil) }
func typeCmd(f *cmdutil.Factory) *cobra.Command { return NewCmdType(f, nil) }

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// The failures a user meets first: one line, the documented exit code,
// and for bad input nothing dialled.
func TestErrors(t *testing.T) {
	closed := closedPort(t)
	for _, tc := range []struct {
		name string
		cmd  func(*cmdutil.Factory) *cobra.Command
		args []string
		code int
		want string
	}{
		{"unknown key", keysCmd, []string{"--target", closed, "--connect-insecure", "ctrl-foo"}, cmdutil.ExitUsage, `unknown key "foo"`},
		{"empty key", keysCmd, []string{"--target", closed, "--connect-insecure", "ctrl--"}, cmdutil.ExitUsage, `write - as "minus"`},
		{"no combo after DOMAIN", keysCmd, []string{"myvm"}, cmdutil.ExitUsage, "at least one key combination"},
		{"bad protocol", keysCmd, []string{"--target", closed, "--connect-insecure", "--protocol", "rdp", "enter"}, cmdutil.ExitUsage, `--protocol "rdp"`},
		{"--view", keysCmd, []string{"--proxy", "wss://127.0.0.1:1", "--token-file", "/nonexistent", "--view", "enter"}, cmdutil.ExitUsage, "--view asks the proxy to drop"},
		{"unreachable target", keysCmd, []string{"--target", closed, "--connect-insecure", "enter"}, cmdutil.ExitUnreachable, "connection refused"},
		{"no TLS dir", keysCmd, []string{"--target", closed, "enter"}, cmdutil.ExitUsage, "--connect-tls-dir"},
		{"SPICE direct without --force", typeCmd, []string{"--target", closed, "--connect-insecure", "--protocol", "spice", "--text", "x"}, cmdutil.ExitUsage, "would disconnect a connected SPICE viewer"},
		{"not on a US keyboard", typeCmd, []string{"--target", closed, "--connect-insecure", "--text", "naïve"}, cmdutil.ExitUsage, `character 'ï' at byte 2`},
		{"unreachable target (type)", typeCmd, []string{"--target", closed, "--connect-insecure", "--text", "x"}, cmdutil.ExitUnreachable, "connection refused"},
		{"token from stdin and text from stdin", typeCmd, []string{"--proxy", "wss://127.0.0.1:1", "--token-file", "-"}, cmdutil.ExitUsage, "give the text with --text"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := cmdtest.Run(t, tc.cmd, tc.args...)
			cmdtest.CheckError(t, err, tc.code, tc.want)
		})
	}
}

// The first argument is DOMAIN unless the flags or the environment say
// there is none.
func TestSplitDomain(t *testing.T) {
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), nil, nil))
	env := map[string]string{}
	f.Getenv = func(k string) string { return env[k] }
	o := &Options{}
	if d, rest := splitDomain(f, o, []string{"myvm", "enter"}); len(d) != 1 || d[0] != "myvm" || len(rest) != 1 {
		t.Errorf("DOMAIN mode: %v %v", d, rest)
	}
	o.Route.Direct.Target = "h:1"
	if d, rest := splitDomain(f, o, []string{"ctrl-c", "enter"}); d != nil || len(rest) != 2 {
		t.Errorf("--target: %v %v", d, rest)
	}
	o.Route.Direct.Target = ""
	env["VIRTCONSOLE_TOKEN"] = "x"
	if d, _ := splitDomain(f, o, []string{"ctrl-c"}); d != nil {
		t.Errorf("VIRTCONSOLE_TOKEN: %v", d)
	}
}

func TestHelp(t *testing.T) {
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), nil, nil))
	for _, cmd := range []*cobra.Command{NewCmdKeys(f, nil), NewCmdType(f, nil)} {
		cmdtest.CheckHelp(t, cmd)
		// Examples for the three ways: DOMAIN, --proxy with --token-file,
		// --target.
		for _, want := range []string{"myvm", "--token-file", "--target"} {
			if !strings.Contains(cmd.Example, want) {
				t.Errorf("%s: no example with %s", cmd.Name(), want)
			}
		}
	}
}
