package serial

import (
	"context"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
)

// --expect and --send keep their command-line order, and pair up: a
// --send completes the --expect before it; a leading --send, or a second
// one in a row, is a step of its own; a trailing --expect only waits.
func TestScriptOrder(t *testing.T) {
	var got *Options
	newCmd := func(f *cmdutil.Factory) *cobra.Command {
		return NewCmdSerial(f, func(_ context.Context, o *Options) error { got = o; return nil })
	}
	_, _, err := cmdtest.Run(t, newCmd, "--proxy", "wss://p:1", "--send", `\r`, "--expect", "login: ", "--send", `root\n`,
		"--send", `\x03`, "--expect", "# ", "--expect", "(?m)^done$")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := Steps(got.Script)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, st := range steps {
		if st.Expect != nil {
			b.WriteString("expect " + st.Expect.String() + ";")
		}
		if st.Send != nil {
			b.WriteString("send " + string(st.Send) + ";")
		}
		b.WriteString("|")
	}
	want := "send \r;|expect login: ;send root\n;|send \x03;|expect # ;|expect (?m)^done$;|"
	if b.String() != want {
		t.Fatalf("steps %q, want %q", b.String(), want)
	}
}

// Bad patterns, escapes and flag combinations are usage errors that say
// which flag is wrong.
func TestScriptFlagErrors(t *testing.T) {
	newCmd := func(f *cmdutil.Factory) *cobra.Command { return NewCmdSerial(f, nil) }
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--expect", "a("}, `--expect "a(": missing closing )`},
		{[]string{"--send", `\q`}, `unknown escape \q`},
		{[]string{"--log", "x"}, "--log needs --expect or --send"},
		{[]string{"--expect", "a", "--timeout", "-1s"}, "--timeout -1s"},
		{[]string{"--reconnect-max", "1m"}, "--reconnect-max needs --reconnect"},
	} {
		_, _, err := cmdtest.Run(t, newCmd, append([]string{"--proxy", "wss://127.0.0.1:1", "--token-file", "/nonexistent"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || cmdutil.ExitCode(err) != cmdutil.ExitUsage {
			t.Errorf("%v: %v (exit %d), want a usage error with %q", tc.args, err, cmdutil.ExitCode(err), tc.want)
		}
	}
}
