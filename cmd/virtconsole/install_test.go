package main

// The install story as README.md's "Install" section tells it: "make
// install PREFIX=..." and "go install ./cmd/virtconsole" from a checkout,
// then "virtconsole --version"; the installed man pages render and the
// installed bash completion registers.

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository root, where the Makefile is.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Fatal(err)
	}
	return root
}

// needTool finds a program the install tests need: a missing one fails
// the test when CI is set and skips it otherwise.
func needTool(t *testing.T, name, debian string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (Debian package %s; make deps): %v", name, debian, err)
		}
		t.Skipf("%s not found (Debian package %s; make deps installs it): %v", name, debian, err)
	}
	return p
}

// installEnv is the environment for make and go in these tests: ours
// without VIRTCONSOLE_*, without a DESTDIR or PREFIX that would redirect
// the install, and without an outer make's flags (make test runs us).
func installEnv(extra ...string) []string {
	var e []string
	for _, kv := range env() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "DESTDIR", "PREFIX", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "GOBIN":
			continue
		}
		e = append(e, kv)
	}
	return append(e, extra...)
}

// runIn runs a command in dir and fails the test when it fails.
func runIn(t *testing.T, dir string, environ []string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = environ
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

var versionLineRE = regexp.MustCompile(`^virtconsole (\S.*) (go\S+) (\S+)/(\S+)\n$`)

// checkVersion runs an installed binary's --version and version --json,
// checks that they agree, and returns what --json printed.
func checkVersion(t *testing.T, bin string) map[string]any {
	t.Helper()
	line, _ := runIn(t, "", installEnv(), bin, "--version")
	m := versionLineRE.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("%s --version printed %q", bin, line)
	}
	if sub, _ := runIn(t, "", installEnv(), bin, "version"); sub != line {
		t.Errorf("%s version printed %q, --version %q", bin, sub, line)
	}
	out, _ := runIn(t, "", installEnv(), bin, "version", "--json")
	var info map[string]any
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("%s version --json: %v\n%s", bin, err, out)
	}
	for _, k := range []string{"version", "go", "os", "arch", "revision", "time", "modified"} {
		if _, ok := info[k]; !ok {
			t.Errorf("%s version --json has no %q:\n%s", bin, k, out)
		}
	}
	if info["version"] != m[1] || info["go"] != m[2] || info["os"] != m[3] || info["arch"] != m[4] {
		t.Errorf("%s: version --json\n%s\ndisagrees with --version %q", bin, out, line)
	}
	return info
}

// checkStamped checks that a build from this checkout says which commit it
// was built from.
func checkStamped(t *testing.T, root, bin string, info map[string]any) {
	t.Helper()
	version, _ := info["version"].(string)
	rev, _ := info["revision"].(string)
	if version == "devel" || version == "" {
		t.Fatalf("%s has the bare version %q: %v", bin, version, info)
	}
	if !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(rev) {
		t.Fatalf("%s: revision %q is not a commit hash: %v", bin, rev, info)
	}
	if !strings.Contains(version, rev[:12]) {
		t.Errorf("%s: version %q does not name the commit %s", bin, version, rev[:12])
	}
	if _, ok := info["time"].(string); !ok || info["time"] == "" {
		t.Errorf("%s: no commit time: %v", bin, info)
	}
	// The commit is one of this checkout's (HEAD may have moved on since).
	runIn(t, root, installEnv(), "git", "cat-file", "-e", rev+"^{commit}")
}

// TestInstallMake: "make install PREFIX=DIR" puts the binary, every man page
// and the bash, zsh and fish completions where README.md says; the binary
// names its commit, the man pages render without warnings, the bash
// completion registers (also through bash-completion's loader, and
// completes), and "make uninstall" removes it all again.
func TestInstallMake(t *testing.T) {
	root := repoRoot(t)
	make := needTool(t, "make", "make")
	needTool(t, "install", "coreutils")
	prefix := t.TempDir()
	runIn(t, root, installEnv(), make, "install", "PREFIX="+prefix)

	pages, err := filepath.Glob(filepath.Join(root, "man", "*.1"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no man pages in man/: %v", err)
	}
	want := map[string]fs.FileMode{
		"bin/virtconsole": 0o755,
		"share/bash-completion/completions/virtconsole":    0o644,
		"share/zsh/site-functions/_virtconsole":            0o644,
		"share/fish/vendor_completions.d/virtconsole.fish": 0o644,
	}
	for _, p := range pages {
		want["share/man/man1/"+filepath.Base(p)] = 0o644
	}
	got := map[string]fs.FileMode{}
	filepath.WalkDir(prefix, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			fi, err := d.Info()
			if err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(prefix, p)
			got[filepath.ToSlash(rel)] = fi.Mode()
		}
		return nil
	})
	for name, mode := range want {
		if m, ok := got[name]; !ok {
			t.Errorf("make install did not install %s", name)
		} else if m != mode {
			t.Errorf("%s installed with mode %v, want %v", name, m, mode)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("make install installed %s, which nobody expects", name)
		}
	}
	for _, c := range []struct{ src, dst string }{
		{"completions/virtconsole.bash", "share/bash-completion/completions/virtconsole"},
		{"completions/_virtconsole", "share/zsh/site-functions/_virtconsole"},
		{"completions/virtconsole.fish", "share/fish/vendor_completions.d/virtconsole.fish"},
	} {
		a, _ := os.ReadFile(filepath.Join(root, c.src))
		b, _ := os.ReadFile(filepath.Join(prefix, c.dst))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s is not %s", c.dst, c.src)
		}
	}

	bin := filepath.Join(prefix, "bin", "virtconsole")
	t.Run("version", func(t *testing.T) {
		checkStamped(t, root, bin, checkVersion(t, bin))
	})

	t.Run("man", func(t *testing.T) {
		man := needTool(t, "man", "man-db")
		needTool(t, "nroff", "groff-base")
		for _, p := range pages {
			page := filepath.Join(prefix, "share", "man", "man1", filepath.Base(p))
			out, stderr := runIn(t, "", installEnv("MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8"), man, "--warnings=all", "-l", page)
			name := strings.TrimSuffix(filepath.Base(p), ".1")
			// In a UTF-8 locale groff prints hyphens as U+2010.
			text := strings.NewReplacer("\u2010", "-", "\u2212", "-").Replace(out)
			if !strings.Contains(text, "NAME") || !regexp.MustCompile(`(?m)^\s+`+regexp.QuoteMeta(name)+`\s+-\s`).MatchString(text) {
				t.Errorf("man -l %s rendered no NAME section for %s:\n%s", page, name, out)
			}
			if stderr != "" {
				t.Errorf("man -l %s warned:\n%s", page, stderr)
			}
		}
	})

	t.Run("bash-completion", func(t *testing.T) {
		bash := needTool(t, "bash", "bash")
		completion := filepath.Join(prefix, "share", "bash-completion", "completions", "virtconsole")
		out, _ := runIn(t, "", installEnv(), bash, "--norc", "--noprofile", "-c", `source "$1" && complete -p virtconsole`, "bash", completion)
		if !strings.Contains(out, "-F __start_virtconsole virtconsole") {
			t.Errorf("sourcing %s registered %q", completion, out)
		}

		// bash-completion finds it under $XDG_DATA_DIRS/bash-completion/completions
		// (so PREFIX/share is the right place) and it completes with the
		// installed binary.
		loader := "/usr/share/bash-completion/bash_completion"
		if _, err := os.Stat(loader); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("no %s (Debian package bash-completion; make deps): %v", loader, err)
			}
			t.Skipf("no %s (Debian package bash-completion; make deps installs it): %v", loader, err)
		}
		script := `source ` + loader + ` && __load_completion virtconsole && complete -p virtconsole >/dev/null || exit 1
for line in "virtconsole ver" "virtconsole --vers"; do
	read -ra COMP_WORDS <<<"$line"
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1)) COMP_LINE=$line COMP_POINT=${#line}
	COMPREPLY=()
	__start_virtconsole virtconsole "${COMP_WORDS[COMP_CWORD]}" virtconsole 2>/dev/null
	echo "$line: ${COMPREPLY[*]}"
done`
		out, _ = runIn(t, "", installEnv("XDG_DATA_DIRS="+filepath.Join(prefix, "share"), "PATH="+filepath.Join(prefix, "bin")+string(os.PathListSeparator)+os.Getenv("PATH")), bash, "--norc", "--noprofile", "-c", script)
		for _, w := range []string{"virtconsole ver: version\n", "virtconsole --vers: --version\n"} {
			if !strings.Contains(out, w) {
				t.Errorf("bash-completion with XDG_DATA_DIRS=%s/share: want %q in:\n%s", prefix, w, out)
			}
		}
	})

	// DESTDIR stages the same tree, PREFIX and all, under another directory.
	t.Run("DESTDIR", func(t *testing.T) {
		stage := t.TempDir()
		runIn(t, root, installEnv(), make, "install", "DESTDIR="+stage, "PREFIX=/usr/local")
		for name := range want {
			if _, err := os.Stat(filepath.Join(stage, "usr", "local", name)); err != nil {
				t.Errorf("make install DESTDIR=%s: %v", stage, err)
			}
		}
	})

	runIn(t, root, installEnv(), make, "uninstall", "PREFIX="+prefix)
	var left []string
	filepath.WalkDir(prefix, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("make uninstall left %v", left)
	}
}

// TestInstallGo: "go install ./cmd/virtconsole" from the checkout (into
// GOBIN), then "virtconsole --version" and "version --json". The build is
// stamped with the commit unless the go configuration turns VCS stamping
// off (-buildvcs=false), and then it says "devel"; the test then installs
// again with GOFLAGS=-buildvcs=auto (go's default) to see the stamp. And
// "go build -ldflags -X ...version.Version=v1.2.3" sets the version.
func TestInstallGo(t *testing.T) {
	root := repoRoot(t)
	gobin := t.TempDir()
	e := installEnv("GOBIN=" + gobin)
	runIn(t, root, e, "go", "install", "./cmd/virtconsole")
	bin := filepath.Join(gobin, "virtconsole")
	info := checkVersion(t, bin)

	goflags, _ := runIn(t, root, e, "go", "env", "GOFLAGS")
	if slices.Contains(strings.Fields(goflags), "-buildvcs=false") {
		t.Logf("go env GOFLAGS=%q turns VCS stamping off here", strings.TrimSpace(goflags))
		if info["version"] != "devel" || info["revision"] != "" {
			t.Errorf("without VCS stamping: %v, want version devel and no revision", info)
		}
		runIn(t, root, append(e, "GOFLAGS=-buildvcs=auto"), "go", "install", "./cmd/virtconsole")
		info = checkVersion(t, bin)
	}
	checkStamped(t, root, bin, info)

	// A release version given to the linker wins over the stamp.
	runIn(t, root, e, "go", "build", "-o", bin, "-ldflags", "-X github.com/virtconsole/virtconsole/cmd/virtconsole/cli/version.Version=v1.2.3", "./cmd/virtconsole")
	if info := checkVersion(t, bin); info["version"] != "v1.2.3" {
		t.Errorf("built with -ldflags -X ...version.Version=v1.2.3: %v", info)
	}
}
