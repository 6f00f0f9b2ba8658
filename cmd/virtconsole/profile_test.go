package main

// Client profiles end to end: profiles written by "virtconsole config
// set" take "virtconsole serial" to the right proxy (two proxies with
// their own CAs and tokens, one QEMU monitor behind both, TLS on both
// legs), flags and the environment win over them, "config view" shows
// where each value comes from, and the token is in no output.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

func TestProfilesSerial(t *testing.T) {
	qemutest.Require(t)
	version := qemuVersion(t)

	// One QEMU monitor on a TLS chardev that verifies clients; proxies A
	// and B in front of it, each with its own listener CA and token.
	qemuPKI, pkiA, pkiB := pki(t), pki(t), pki(t)
	_, addr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: qemuPKI, VerifyPeer: true, Monitor: true})
	const tokenA, tokenB = "profile-token-aaaa", "profile-token-bbbb"
	proxy := func(dir, token string) *daemon {
		tokens := writeTokens(t, map[string]resolver.Console{token: {Type: "console", Address: addr}})
		return startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", qemuPKI, "--tokens", tokens)
	}
	pA, pB := proxy(pkiA, tokenA), proxy(pkiB, tokenB)
	tokenFileA := writeToken(t, tokenA)

	home := t.TempDir()
	cfg := filepath.Join(home, "virtconsole", "config.toml")
	environ := func(extra ...string) []string { return env(append([]string{"XDG_CONFIG_HOME=" + home}, extra...)...) }
	var outputs []string
	vc := func(stdin string, extra []string, args ...string) result {
		t.Helper()
		r := runEnv(t, environ(extra...), strings.NewReader(stdin), args...)
		outputs = append(outputs, r.stdout, r.stderr)
		return r
	}
	mustVC := func(args ...string) result {
		t.Helper()
		r := vc("", nil, args...)
		if r.code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
		return r
	}
	for _, set := range [][]string{
		{"proxy", "wss://" + pA.addr, "--profile", "a"},
		{"ca-file", filepath.Join(pkiA, "ca-cert.pem"), "--profile", "a"},
		{"token-file", tokenFileA, "--profile", "a"},
		{"escape", "^A", "--profile", "a"},
		{"proxy", "wss://" + pB.addr, "--profile", "b"},
		{"ca-file", filepath.Join(pkiB, "ca-cert.pem"), "--profile", "b"},
		{"token-command", "printf '%s\\n' " + tokenB, "--profile", "b"},
	} {
		mustVC(append([]string{"config", "set"}, set...)...)
	}
	// Completions offer the profiles.
	for _, args := range [][]string{{"serial", "--profile", ""}, {"config", "use-profile", ""}} {
		if r := mustVC(append([]string{"__complete"}, args...)...); !strings.HasPrefix(r.stdout, "a\nb\n:4\n") {
			t.Errorf("completion of %v: %q", args, r.stdout)
		}
	}
	checkMode := func(path string, want os.FileMode) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, mode %v; want %04o", path, err, fi.Mode().Perm(), want)
		}
	}
	checkMode(cfg, 0o600)
	checkMode(filepath.Dir(cfg), 0o700)

	// ask pipes "info version" into the monitor through the profile's
	// route and says which proxy had the session.
	sessions := func() (int, int) {
		return strings.Count(pA.log.String(), "session start"), strings.Count(pB.log.String(), "session start")
	}
	ask := func(want string, extra []string, args ...string) {
		t.Helper()
		a0, b0 := sessions()
		r := vc("info version\n", extra, append([]string{"serial"}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, version) {
			t.Fatalf("serial %v %v: exit %d, stdout %q, stderr %q", args, extra, r.code, r.stdout, r.stderr)
		}
		var got string
		waitFor(t, 10*time.Second, "the proxy's session log line", func() bool {
			a, b := sessions()
			switch {
			case a == a0+1 && b == b0:
				got = "a"
			case b == b0+1 && a == a0:
				got = "b"
			}
			return got != ""
		})
		if got != want {
			t.Fatalf("serial %v %v reached proxy %s, want %s", args, extra, got, want)
		}
	}
	ask("a", nil)                                                 // the default profile: the first one set
	ask("b", nil, "--profile", "b")                               // token from token-command
	ask("b", []string{"VIRTCONSOLE_PROFILE=b"})                   // the environment picks it too
	ask("a", []string{"VIRTCONSOLE_PROFILE=b"}, "--profile", "a") // the flag wins
	// Flags win over the profile's values.
	ask("b", nil, "--proxy", "wss://"+pB.addr, "--ca-file", filepath.Join(pkiB, "ca-cert.pem"), "--token-file", writeToken(t, tokenB))
	// The environment's token wins over the profile's token-command.
	ask("a", []string{"VIRTCONSOLE_TOKEN=" + tokenA, "VIRTCONSOLE_PROXY=wss://" + pA.addr}, "--profile", "b", "--ca-file", filepath.Join(pkiA, "ca-cert.pem"))

	// config view: the effective values and their sources.
	var view struct {
		Config   string `json:"config"`
		Profile  string `json:"profile"`
		Settings []struct {
			Key    string `json:"key"`
			Value  any    `json:"value"`
			Source string `json:"source"`
		} `json:"settings"`
	}
	r := vc("", []string{"VIRTCONSOLE_PROXY=wss://env.example:1"}, "config", "view", "--profile", "b", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil {
		t.Fatalf("config view --json: %v: %q", err, r.stdout)
	}
	got := map[string]string{}
	for _, s := range view.Settings {
		got[s.Key] = s.Source + " = " + strings.TrimSpace(strings.Trim(mustJSON(t, s.Value), `"`))
	}
	for key, want := range map[string]string{
		"proxy":         "env VIRTCONSOLE_PROXY = wss://env.example:1",
		"ca-file":       "profile b = " + filepath.Join(pkiB, "ca-cert.pem"),
		"token-command": "profile b = (set)",
		"escape":        "default = ^]",
		"proxy-timeout": "default = 20s",
	} {
		if got[key] != want {
			t.Errorf("config view: %s: %q, want %q", key, got[key], want)
		}
	}
	if view.Config != cfg || view.Profile != "b" {
		t.Errorf("config view: file %q profile %q", view.Config, view.Profile)
	}
	text := mustVC("config", "view").stdout
	for _, want := range []string{"config file: " + cfg, "profile: a (from default-profile)", "escape ", "^A ", "profile a"} {
		if !strings.Contains(text, want) {
			t.Errorf("config view lacks %q:\n%s", want, text)
		}
	}

	// A file others can read: one warning line naming it; it still works.
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	r = vc("info version\n", nil, "serial")
	wantWarning := "warning: config file " + cfg + " is readable by others (mode 0644); chmod 600 it\n"
	if r.code != 0 || r.stderr != wantWarning {
		t.Errorf("config file mode 0644: exit %d, stderr %q, want %q", r.code, r.stderr, wantWarning)
	}

	// config set: a new file renamed over the old one, mode 0600, the
	// other profile kept.
	before, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustVC("config", "set", "proxy-timeout", "9s", "--profile", "a")
	after, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if before.Sys().(*syscall.Stat_t).Ino == after.Sys().(*syscall.Stat_t).Ino || after.Mode().Perm() != 0o600 {
		t.Errorf("config set: inode %d -> %d (want a new file renamed over it), mode %04o", before.Sys().(*syscall.Stat_t).Ino, after.Sys().(*syscall.Stat_t).Ino, after.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(cfg)); len(entries) != 1 {
		t.Errorf("config directory holds %d files, want the config file only", len(entries))
	}
	ask("b", nil, "--profile", "b")
	if r := mustVC("config", "get", "proxy-timeout", "--profile", "a"); r.stdout != "9s\n" {
		t.Errorf("config get proxy-timeout: %q", r.stdout)
	}

	// An unknown key: an error naming the file and line.
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Count(string(b), "\n") + 1
	if err := os.WriteFile(cfg, append(b, "colour = \"blue\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	r = vc("", nil, "serial")
	wantErr := regexp.MustCompile(`^virtconsole: ` + regexp.QuoteMeta(cfg) + `:` + strconv.Itoa(line) + `: unknown key "colour" in profile b; the keys are [^\n]*\n$`)
	if r.code != 1 || !wantErr.MatchString(r.stderr) {
		t.Errorf("unknown key: exit %d, stderr %q", r.code, r.stderr)
	}

	for _, o := range append(outputs, pA.log.String(), pB.log.String()) {
		if strings.Contains(o, tokenA) || strings.Contains(o, tokenB) {
			t.Fatalf("a token in the output: %q", o)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
