//go:build unix

package connect

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

func TestReadTokenWarnsAboutReadableFile(t *testing.T) {
	const tok = "q8Zr/1kD+wUe9x/TmV3bP0aLc2Hs5fGn-SECRET"
	path := filepath.Join(t.TempDir(), "mytoken")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o600, ""},
		{0o400, ""},
		{0o644, "warning: token file " + path + " is readable by others (mode 0644); chmod 600 it\n"},
		{0o640, "warning: token file " + path + " is readable by its group (mode 0640); chmod 600 it\n"},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &errOut))
		got, err := (&ProxyOptions{TokenFile: path}).ReadToken(f)
		if err != nil || got != tok {
			t.Fatalf("mode %04o: ReadToken = %v (token read back: %v)", tc.mode, err, got == tok)
		}
		if errOut.String() != tc.want || out.Len() != 0 {
			t.Errorf("mode %04o: stderr %q, want %q; stdout %q", tc.mode, errOut.String(), tc.want, out.String())
		}
		if strings.Contains(errOut.String(), "SECRET") {
			t.Errorf("the warning holds the token")
		}
	}

	// Stdin and the environment are no files: no warning.
	var errOut bytes.Buffer
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(tok+"\n"), &bytes.Buffer{}, &errOut))
	f.Getenv = func(string) string { return tok }
	for _, o := range []*ProxyOptions{{TokenFile: "-"}, {}} {
		if got, err := o.ReadToken(f); err != nil || got != tok {
			t.Fatalf("ReadToken(%q) = %v", o.TokenFile, err)
		}
	}
	if errOut.Len() != 0 {
		t.Errorf("stderr %q", errOut.String())
	}
}
