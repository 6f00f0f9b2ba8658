package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/version"
)

func mainOut(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), cmdutil.Test(strings.NewReader(""), &out, &errOut), args)
	return out.String(), errOut.String(), code
}

// TestVersionFlag: "virtconsole --version" prints what "virtconsole
// version" prints, and only on the root command.
func TestVersionFlag(t *testing.T) {
	want := version.Get().Line() + "\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errOut, code := mainOut(t, args...)
		if code != 0 || out != want || errOut != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", args, code, out, errOut, want)
		}
	}
	if _, errOut, code := mainOut(t, "-v"); code == 0 || !strings.Contains(errOut, "unknown shorthand flag: 'v'") {
		t.Errorf("-v: exit %d, stderr %q; want an unknown flag", code, errOut)
	}
	if out, _, code := mainOut(t, "--help"); code != 0 || !strings.Contains(out, "--version") {
		t.Errorf("--help: exit %d, no --version in:\n%s", code, out)
	}
}
