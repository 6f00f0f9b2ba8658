//go:build unix

package resolver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExposedFileWarning(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mytoken")
	writeFile(t, path, tokA+"\n")
	for _, tc := range []struct {
		mode os.FileMode
		want string // "" for no warning
	}{
		{0o600, ""},
		{0o400, ""},
		{0o700, ""},
		{0o620, ""}, // writable by the group, not readable: not a disclosure
		{0o644, "token file " + path + " is readable by others (mode 0644); chmod 600 it"},
		{0o604, "token file " + path + " is readable by others (mode 0604); chmod 600 it"},
		{0o444, "token file " + path + " is readable by others (mode 0444); chmod 600 it"},
		{0o640, "token file " + path + " is readable by its group (mode 0640); chmod 600 it"},
		{0o660, "token file " + path + " is readable by its group (mode 0660); chmod 600 it"},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		got := ExposedFileWarning(path)
		if got != tc.want {
			t.Errorf("mode %04o: %q, want %q", tc.mode, got, tc.want)
		}
		if strings.Contains(got, "SECRET") || strings.Contains(got, "\n") {
			t.Errorf("mode %04o: warning %q holds the token or a newline", tc.mode, got)
		}
	}

	// A symlink is judged by the file it points to.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o600)
	if got := ExposedFileWarning(link); got != "" {
		t.Errorf("symlink to a 0600 file: %q", got)
	}
	os.Chmod(path, 0o644)
	if got := ExposedFileWarning(link); !strings.Contains(got, "readable by others") {
		t.Errorf("symlink to a 0644 file: %q", got)
	}

	// Nothing to say about what cannot be stat'ed or is no file: the
	// read that follows reports it.
	for _, p := range []string{filepath.Join(dir, "missing"), dir} {
		if got := ExposedFileWarning(p); got != "" {
			t.Errorf("%s: %q", p, got)
		}
	}
}
