package certs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// run executes "certs args..." the way the root command does.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return cmdtest.Run(t, NewCmdCerts, args...)
}

func TestCreateThenCheck(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	out, _, err := run(t, "create", "--dir", dir, "--host", "hv1.example", "--host", "127.0.0.1", "--days", "30")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tlscreds.CreatedFiles {
		if !strings.Contains(out, "wrote "+filepath.Join(dir, f)) {
			t.Errorf("create output does not name %s:\n%s", f, out)
		}
	}
	if !strings.Contains(out, "server certificate for hv1.example, 127.0.0.1") ||
		!strings.Contains(out, "valid until "+time.Now().AddDate(0, 0, 30).UTC().Format("2006-01-02")) {
		t.Errorf("create output:\n%s", out)
	}

	out, stderr, err := run(t, "check", "--dir", dir)
	if err != nil || stderr != "" {
		t.Fatalf("check: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, dir+" as server:") || !strings.Contains(out, dir+" as client:") ||
		!strings.Contains(out, "all 27 checks passed") || strings.Contains(out, "FAIL") {
		t.Errorf("check output:\n%s", out)
	}
	// The CA is shown once.
	if n := strings.Count(out, "ca-cert.pem      readable"); n != 1 {
		t.Errorf("CA shown %d times:\n%s", n, out)
	}

	out, _, err = run(t, "check", "--dir", dir, "--role", "client")
	if err != nil || strings.Contains(out, "server") || !strings.Contains(out, "all 16 checks passed") {
		t.Errorf("check --role client: %v\n%s", err, out)
	}
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, _, err := run(t, "create", "--dir", dir, "--host", "localhost"); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	_, _, err := run(t, "create", "--dir", dir, "--host", "localhost")
	if err == nil || !strings.Contains(err.Error(), "already holds ca-cert.pem") || !strings.HasSuffix(err.Error(), "; use --force to replace them") {
		t.Fatalf("second create: %v", err)
	}
	if cmdutil.ExitCode(err) != cmdutil.ExitUsage {
		t.Errorf("exit code %d", cmdutil.ExitCode(err))
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem")); !bytes.Equal(before, after) {
		t.Error("ca-cert.pem replaced without --force")
	}
	if _, _, err := run(t, "create", "--dir", dir, "--host", "localhost", "--force"); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem")); bytes.Equal(before, after) {
		t.Error("ca-cert.pem not replaced with --force")
	}
}

func TestCreateUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"create", "--dir", t.TempDir()},
		{"create", "--host", "localhost"},
		{"create", "--dir", t.TempDir(), "--host", "localhost", "--days", "0"},
		{"create", "--dir", t.TempDir(), "--host", "localhost:22"},
		{"create", "--dir", t.TempDir(), "--host", "localhost", "extra"},
		{"create", "--dir", t.TempDir(), "--host", "localhost", "--group", "no-such-group-virtconsole"},
		{"create", "--dir", t.TempDir(), "--host", "localhost", "--group", "0", "--for", "qemu"},
		{"check"},
		{"check", "--dir", t.TempDir(), "--role", "peer"},
	} {
		_, _, err := run(t, args...)
		if code := cmdutil.ExitCode(err); code != cmdutil.ExitUsage {
			t.Errorf("%q: exit code %d (%v); want %d", args, code, err, cmdutil.ExitUsage)
		}
	}
}

// TestCreateGroup: --group gives the directory (0750) and every file
// (0640) to the group, which may be a numeric ID, also on a renewal
// (--force); the result passes check.
func TestCreateGroup(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	gid := os.Getgid() // a group this process may give files to
	for _, force := range []string{"--force=false", "--force"} {
		out, _, err := run(t, "create", "--dir", dir, "--host", "localhost", "--group", strconv.Itoa(gid), force)
		if err != nil {
			t.Fatal(err)
		}
		if want := "client key (mode 0640, group " + strconv.Itoa(gid) + ")"; !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
		for _, f := range append([]string{"."}, tlscreds.CreatedFiles...) {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			want := os.FileMode(0o640)
			if f == "." {
				want = 0o750
			}
			if fi.Mode().Perm() != want || int(fi.Sys().(*syscall.Stat_t).Gid) != gid {
				t.Errorf("%s %s: mode %04o group %d, want %04o group %d", force, f, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, want, gid)
			}
		}
	}
	if out, _, err := run(t, "check", "--dir", dir); err != nil {
		t.Errorf("check of a group-readable directory: %v\n%s", err, out)
	}
}

// TestCreateForQEMU: --for qemu gives QEMU's group the directory and the
// server's files only; the client key stays 0600.
func TestCreateForQEMU(t *testing.T) {
	t.Parallel()
	if _, err := lookupGroup(qemuGroups); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs root and QEMU's group (libvirt-daemon-system; make deps): %v", err)
		}
		t.Skipf("needs root and QEMU's group (libvirt-daemon-system): %v", err)
	}
	dir := filepath.Join(t.TempDir(), "pki")
	if _, _, err := run(t, "create", "--dir", dir, "--host", "localhost", "--for", "qemu"); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]os.FileMode{".": 0o750, "ca-cert.pem": 0o640, "server-cert.pem": 0o640, "server-key.pem": 0o640,
		"client-cert.pem": 0o644, "client-key.pem": 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", f, fi.Mode().Perm(), want)
		}
	}
}

func TestCheckFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Expired material, and a world-readable server key.
	if err := tlscreds.Create(dir, []string{"localhost"}, tlscreds.CreateOptions{Now: time.Now().AddDate(0, 0, -3), Validity: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "server-key.pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "client-key.pem"))

	out, stderr, err := run(t, "check", "--dir", dir)
	var silent *cmdutil.SilentError
	if !errors.As(err, &silent) || cmdutil.ExitCode(err) != cmdutil.ExitTLS {
		t.Fatalf("check: %v; want a silent exit %d", err, cmdutil.ExitTLS)
	}
	if stderr != "" {
		t.Errorf("stderr: %q", stderr)
	}
	expired := time.Now().AddDate(0, 0, -2).UTC().Format("2006-01-02")
	for _, want := range []string{
		"  FAIL  ca-cert.pem      inside validity period\n        tls: ca-cert.pem in " + dir + ": certificate expired on " + expired,
		"  FAIL  server-cert.pem  inside validity period\n        tls: server-cert.pem in " + dir + ": certificate expired on " + expired + "; renew it\n",
		"  ok    server-cert.pem  signed by ca-cert.pem\n",
		"  FAIL  server-key.pem   not readable by others\n        tls: server-key.pem in " + dir + ": private key is readable by others (mode 0644)",
		"  FAIL  client-key.pem   readable\n        tls: client-key.pem in " + dir + ": file not found",
		"  skip  client-key.pem   matches the certificate\n",
		"5 of 27 checks failed\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

func TestCheckNothingToCheck(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		_, _, err := run(t, "check", "--dir", dir)
		if err == nil || cmdutil.ExitCode(err) != cmdutil.ExitTLS || strings.Contains(err.Error(), "\n") {
			t.Errorf("check of %s: %v (exit %d)", dir, err, cmdutil.ExitCode(err))
		}
	}
	// An explicit role on an empty directory reports the missing files.
	out, _, err := run(t, "check", "--dir", t.TempDir(), "--role", "server")
	if cmdutil.ExitCode(err) != cmdutil.ExitTLS || !strings.Contains(out, "FAIL  server-cert.pem  readable") {
		t.Errorf("check --role server of empty dir: %v\n%s", err, out)
	}
}

func TestHelpText(t *testing.T) {
	t.Parallel()
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}))
	cmd := NewCmdCerts(f)
	cmdtest.CheckHelp(t, cmd)
	if len(cmd.Commands()) != 2 {
		t.Errorf("subcommands: %d", len(cmd.Commands()))
	}
}

func TestRunFHooks(t *testing.T) {
	t.Parallel()
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}))
	var got *CreateOptions
	cmd := NewCmdCreate(f, func(o *CreateOptions) error { got = o; return nil })
	cmd.SetArgs([]string{"--dir", "d", "--host", "a", "--host", "b", "--force"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if got.Dir != "d" || strings.Join(got.Hosts, ",") != "a,b" || !got.Force || got.Days != 365 {
		t.Errorf("CreateOptions = %+v", got)
	}
	var gotCheck *CheckOptions
	cmd = NewCmdCheck(f, func(o *CheckOptions) error { gotCheck = o; return nil })
	cmd.SetArgs([]string{"--dir", "d", "--role", "client"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if gotCheck.Dir != "d" || gotCheck.Role != "client" {
		t.Errorf("CheckOptions = %+v", gotCheck)
	}
}
