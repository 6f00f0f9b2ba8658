//go:build unix

package server

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// TestNewResolverWarnsAboutReadableTokenFile: "server proxy --tokens" and
// "server resolver --tokens" log one warning, without the token, when the
// token file can be read by its group or others.
func TestNewResolverWarnsAboutReadableTokenFile(t *testing.T) {
	const tok = "AbC+dEf/gHi=-SECRET"
	data, _ := json.Marshal(map[string]resolver.Console{tok: {Type: "serial", Address: "127.0.0.1:4555"}})
	path := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode os.FileMode
		want string
	}{
		{0o600, ""},
		{0o644, "token file " + path + " is readable by others (mode 0644); chmod 600 it"},
		{0o640, "token file " + path + " is readable by its group (mode 0640); chmod 600 it"},
	} {
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		var errOut bytes.Buffer
		f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &errOut))
		res, err := newResolver(f, path, "", "", tlscreds.DefaultPolicy())
		if err != nil {
			t.Fatalf("mode %04o: %v", tc.mode, err)
		}
		if _, err := res.Resolve(context.Background(), tok); err != nil {
			t.Errorf("mode %04o: the token does not resolve: %v", tc.mode, err)
		}
		logs := errOut.String()
		if strings.Contains(logs, "SECRET") {
			t.Errorf("mode %04o: the log holds the token:\n%s", tc.mode, logs)
		}
		if tc.want == "" {
			if logs != "" {
				t.Errorf("mode %04o: logged %q", tc.mode, logs)
			}
			continue
		}
		if strings.Count(logs, "\n") != 1 || !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, tc.want) {
			t.Errorf("mode %04o: logged %q, want one WARN line with %q", tc.mode, logs, tc.want)
		}
	}
}
