package share

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/grant"
)

func newCmd(f *cmdutil.Factory) *cobra.Command { return NewCmdShare(f, nil) }

// TestShare: --new-key writes a key; a grant minted with it names the
// token's ID (never the token), the role, the expiry; the link carries
// it in the fragment; --json prints the same; wrong flag sets are flag
// errors.
func TestShare(t *testing.T) {
	cmdtest.CheckHelp(t, newCmd(cmdutil.NewFactory(cmdutil.Test(nil, nil, nil))))
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "grant.key")
	if out, _, err := cmdtest.Run(t, newCmd, "--new-key", keyPath); err != nil || !strings.Contains(out, keyPath) {
		t.Fatalf("--new-key: %q, %v", out, err)
	}
	key, err := grant.LoadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(dir, "tok")
	os.WriteFile(tokFile, []byte("s3cret-token\n"), 0o600)

	out, _, err := cmdtest.Run(t, newCmd, "--token-file", tokFile, "--type", "serial", "--ttl", "10m", "--grant-key", keyPath, "--proxy", "https://proxy.example:6443")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3cret-token") || !strings.Contains(out, "link:    https://proxy.example:6443/serial.html#token=vcg1.") {
		t.Fatalf("output %q", out)
	}
	g := strings.Fields(out[strings.Index(out, "grant:"):])[1]
	c, err := key.Verify(g, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.Console != resolver.TokenID("s3cret-token") || c.Role != protocols.RoleView || c.Expiry().Sub(time.Now()) > 10*time.Minute || !strings.Contains(c.By, "@") {
		t.Fatalf("claims %+v", c)
	}

	out, _, err = cmdtest.Run(t, newCmd, "--session", "3f46e0a823f092c8", "--role", "control", "--grant-key", keyPath, "--json")
	var res Result
	if err != nil || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("--json: %q, %v", out, err)
	}
	if c, err := key.Verify(res.Grant, time.Now()); err != nil || c.Session != "3f46e0a823f092c8" || c.Role != protocols.RoleControl || c.JTI != res.JTI || res.Link != "" {
		t.Fatalf("--json %+v: claims %+v, %v", res, c, err)
	}

	out, _, err = cmdtest.Run(t, newCmd, "myvm", "--type", "serial", "--index", "1", "--grant-key", keyPath, "--json")
	if err != nil || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("DOMAIN --json: %q, %v", out, err)
	}
	if c, err := key.Verify(res.Grant, time.Now()); err != nil || c.Domain != "myvm" || c.Kind != protocols.KindSerial || c.Index != 1 || c.Role != protocols.RoleView {
		t.Fatalf("DOMAIN: claims %+v, %v", c, err)
	}

	for _, args := range [][]string{
		{"--grant-key", keyPath},
		{"--session", "x", "--token-id", "y", "--grant-key", keyPath},
		{"--session", "x"},
		{"--session", "x", "--grant-key", keyPath, "--server", "https://a:1"},
		{"--session", "x", "--grant-key", keyPath, "--ttl", "25h"},
		{"--session", "x", "--grant-key", keyPath, "--role", "admin"},
		{"--session", "x", "--grant-key", keyPath, "--proxy", "http://cleartext:1"},
		{"myvm", "--session", "x", "--grant-key", keyPath},
		{"myvm", "--type", "rdp", "--grant-key", keyPath},
	} {
		var fe *cmdutil.FlagError
		if _, _, err := cmdtest.Run(t, newCmd, args...); !errors.As(err, &fe) {
			t.Errorf("%v: %v, want a flag error", args, err)
		}
	}
}
