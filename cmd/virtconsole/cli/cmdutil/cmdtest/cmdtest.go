// Package cmdtest runs one command of the tree in a test the way the root
// command runs it, with in-memory I/O streams.
package cmdtest

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// Run builds the command with newCmd on a test Factory (empty stdin),
// executes it with args as cmdutil.Execute does for the root, and returns
// what it wrote and its error.
func Run(t testing.TB, newCmd func(*cmdutil.Factory) *cobra.Command, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &errOut))
	f.Getenv = Getenv
	cmd := newCmd(f)
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	err = cmdutil.Execute(context.Background(), cmd, args)
	return out.String(), errOut.String(), err
}

// clientConfigEnv are the variables that lead the client commands to a
// config file and a profile: hidden from tests, which must not read the
// developer's file.
var clientConfigEnv = map[string]bool{"VIRTCONSOLE_CLIENT_CONFIG": true, "VIRTCONSOLE_PROFILE": true, "XDG_CONFIG_HOME": true, "HOME": true}

// Getenv is os.Getenv without the variables that choose a client config
// file or profile.
func Getenv(key string) string {
	if clientConfigEnv[key] {
		return ""
	}
	return os.Getenv(key)
}

// CheckHelp fails t for cmd or any command below it that lacks a Short,
// Long or Example text: every command has help with examples.
func CheckHelp(t testing.TB, cmd *cobra.Command) {
	t.Helper()
	if cmd.Short == "" || cmd.Long == "" || cmd.Example == "" {
		t.Errorf("%q lacks Short, Long or Example", cmd.CommandPath())
	}
	for _, sub := range cmd.Commands() {
		CheckHelp(t, sub)
	}
}

// CheckError fails t unless err is an error of one line that contains
// want and exits with code.
func CheckError(t testing.TB, err error, code int, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("succeeded; want exit code %d and %q", code, want)
	}
	if got := cmdutil.ExitCode(err); got != code {
		t.Errorf("exit code %d, want %d (%v)", got, code, err)
	}
	if msg := cmdutil.OneLine(err); msg != err.Error() || !strings.Contains(msg, want) {
		t.Errorf("error %q, want one line with %q", err, want)
	}
}
