package version

import (
	"bytes"
	"encoding/json"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

func buildInfo(module string, settings ...string) *debug.BuildInfo {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/virtconsole/virtconsole", Version: module}}
	for i := 0; i+1 < len(settings); i += 2 {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
	}
	return bi
}

func TestInfoFrom(t *testing.T) {
	const rev = "f9eb4af48d94454fe1c61703f81f990adf3ed7af"
	vcs := []string{"GOOS", "linux", "GOARCH", "arm64", "vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "true"}
	clean := []string{"vcs.revision", rev, "vcs.time", "2026-12-01T10:00:00Z", "vcs.modified", "false"}
	for _, tc := range []struct {
		name, ldflags string
		bi            *debug.BuildInfo
		want          string
	}{
		{"no build info", "", nil, "devel"},
		{"devel without vcs (-buildvcs=false)", "", buildInfo("(devel)"), "devel"},
		{"empty module version", "", buildInfo(""), "devel"},
		{"devel with vcs, modified", "", buildInfo("(devel)", vcs...), "devel+f9eb4af48d94 (2026-12-01T10:00:00Z, modified)"},
		{"devel with vcs, clean", "", buildInfo("(devel)", clean...), "devel+f9eb4af48d94 (2026-12-01T10:00:00Z)"},
		{"devel with a revision only", "", buildInfo("(devel)", "vcs.revision", "abc123"), "devel+abc123"},
		{"pseudo-version from a checkout", "", buildInfo("v0.0.0-20261201100000-f9eb4af48d94+dirty", vcs...), "v0.0.0-20261201100000-f9eb4af48d94+dirty"},
		{"go install @tag", "", buildInfo("v1.4.0"), "v1.4.0"},
		{"ldflags win over vcs", "v1.2.3", buildInfo("(devel)", vcs...), "v1.2.3"},
		{"ldflags win over a module version", "v1.2.3", buildInfo("v1.4.0"), "v1.2.3"},
		{"ldflags without build info", "v1.2.3", nil, "v1.2.3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := infoFrom(tc.ldflags, tc.bi).Version; got != tc.want {
				t.Errorf("version %q, want %q", got, tc.want)
			}
		})
	}

	i := infoFrom("", buildInfo("(devel)", vcs...))
	want := Info{Version: "devel+f9eb4af48d94 (2026-12-01T10:00:00Z, modified)", Go: "go1.26.8", OS: "linux", Arch: "arm64",
		Revision: rev, Time: "2026-12-01T10:00:00Z", Modified: true}
	if i != want {
		t.Errorf("info %+v, want %+v", i, want)
	}
	if got, want := i.Line(), "virtconsole devel+f9eb4af48d94 (2026-12-01T10:00:00Z, modified) go1.26.8 linux/arm64"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	if i := infoFrom("", nil); i.Go != runtime.Version() || i.OS != runtime.GOOS || i.Arch != runtime.GOARCH {
		t.Errorf("without build info: %+v", i)
	}
}

func TestStringHonoursLdflags(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "v9.8.7"
	if got := String(); got != "v9.8.7" {
		t.Errorf("String() = %q with Version set", got)
	}
}

func runCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := NewCmdVersion(cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &errOut)), nil)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("version %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

func TestCmdVersion(t *testing.T) {
	if got, want := runCmd(t), Get().Line()+"\n"; got != want {
		t.Errorf("version printed %q, want %q", got, want)
	}

	out := runCmd(t, "--json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("version --json: %v\n%s", err, out)
	}
	for _, k := range []string{"version", "go", "os", "arch", "revision", "time", "modified"} {
		if _, ok := m[k]; !ok {
			t.Errorf("version --json has no %q: %s", k, out)
		}
	}
	if len(m) != 7 {
		t.Errorf("version --json has %d keys: %s", len(m), out)
	}
	var i Info
	if err := json.Unmarshal([]byte(out), &i); err != nil || i != Get() {
		t.Errorf("version --json = %+v (%v), want %+v", i, err, Get())
	}
}
