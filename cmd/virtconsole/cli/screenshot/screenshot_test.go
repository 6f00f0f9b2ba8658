package screenshot

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
)

func newCmd(f *cmdutil.Factory) *cobra.Command { return NewCmdScreenshot(f, nil) }

func TestErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	// A server that accepts and says nothing: the timeout.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	notPNG := filepath.Join(t.TempDir(), "x.png")
	os.WriteFile(notPNG, []byte("not a png"), 0o600)
	out := filepath.Join(t.TempDir(), "shot.png")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no -o", []string{"--target", closed, "--connect-insecure"}, cmdutil.ExitUsage, "give -o FILE.png"},
		{"--json to stdout", []string{"--target", closed, "--connect-insecure", "-o", "-", "--json"}, cmdutil.ExitUsage, "--json prints to standard output"},
		{"bad --wait-change", []string{"--target", closed, "--connect-insecure", "-o", out, "--wait-change", notPNG}, cmdutil.ExitUsage, "--wait-change " + notPNG},
		{"no console", []string{"-o", out}, cmdutil.ExitUsage, "no console given"},
		{"unreachable target", []string{"--target", closed, "--connect-insecure", "-o", out}, cmdutil.ExitUnreachable, "connection refused"},
		{"timeout", []string{"--target", silent.Addr().String(), "--connect-insecure", "-o", out, "--timeout", "300ms", "--handshake-timeout", "10s"}, cmdutil.ExitTimeout, "within --timeout 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := cmdtest.Run(t, newCmd, tc.args...)
			cmdtest.CheckError(t, err, tc.code, tc.want)
			if _, err := os.Stat(out); err == nil {
				t.Error("an image was written")
			}
		})
	}
}

func TestHelp(t *testing.T) {
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), nil, nil))
	cmd := NewCmdScreenshot(f, nil)
	cmdtest.CheckHelp(t, cmd)
	for _, want := range []string{"myvm", "--token-file", "--target", "--wait-change", "--wait-stable", "-o -"} {
		if !strings.Contains(cmd.Example, want) {
			t.Errorf("no example with %s", want)
		}
	}
}
