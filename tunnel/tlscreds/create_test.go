package tlscreds

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func createdCA(t *testing.T, hosts []string, now time.Time) *x509.Certificate {
	t.Helper()
	dir := t.TempDir()
	if err := Create(dir, hosts, CreateOptions{Now: now}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("no PEM block in ca-cert.pem")
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestCreateUniqueCASubject: every created CA has its own subject (the
// first host, the date and a random suffix in the common name), so that
// "issued by …" in an error tells two created CAs apart, even for the same
// host on the same day.
func TestCreateUniqueCASubject(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, time.March, 4, 12, 0, 0, 0, time.UTC)
	a := createdCA(t, []string{"127.0.0.1", "localhost"}, now)
	b := createdCA(t, []string{"127.0.0.1", "localhost"}, now)
	if a.Subject.String() == b.Subject.String() {
		t.Fatalf("two created CAs share the subject %q", a.Subject)
	}
	for _, ca := range []*x509.Certificate{a, b} {
		cn := ca.Subject.CommonName
		if !strings.HasPrefix(cn, "virtconsole CA 127.0.0.1 2026-03-04 ") || len(ca.Subject.Organization) != 1 || ca.Subject.Organization[0] != "virtconsole" {
			t.Errorf("CA subject %q: want CN \"virtconsole CA 127.0.0.1 2026-03-04 <suffix>\", O=virtconsole", ca.Subject)
		}
	}
	long := createdCA(t, []string{strings.Repeat("a", 60) + ".example"}, now)
	if n := len(long.Subject.CommonName); n > 64 {
		t.Errorf("CA common name of %d characters (X.509 allows 64): %q", n, long.Subject.CommonName)
	}
}

// TestCreateShare: with Share, the directory is 0750 and the shared files
// 0640, all with the group; the others keep 0600 (keys) and 0644 and
// their group; a renewal (Force) keeps it so.
func TestCreateShare(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	gid := os.Getgid() // a group this process may give files to
	for _, force := range []bool{false, true} {
		if err := Create(dir, []string{"127.0.0.1"}, CreateOptions{Force: force, Share: &Share{GID: gid, Files: QEMUFiles}}); err != nil {
			t.Fatal(err)
		}
		want := map[string]os.FileMode{".": 0o750, CACertFile: 0o640, RoleServer.CertFile(): 0o640, RoleServer.KeyFile(): 0o640,
			RoleClient.CertFile(): 0o644, RoleClient.KeyFile(): 0o600}
		for f, mode := range want {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("force=%v: %s mode %04o, want %04o", force, f, fi.Mode().Perm(), mode)
			}
			if g := int(fi.Sys().(*syscall.Stat_t).Gid); mode&0o040 != 0 && mode != 0o644 && g != gid {
				t.Errorf("force=%v: %s group %d, want %d", force, f, g, gid)
			}
		}
		if _, err := Load(dir, RoleServer); err != nil {
			t.Errorf("force=%v: a group-readable server key is refused: %v", force, err)
		}
	}
}

// TestCreateParents: missing parents of dir are made 0755 (a daemon that
// is not root must reach dir), dir itself 0700.
func TestCreateParents(t *testing.T) {
	t.Parallel()
	parent := filepath.Join(t.TempDir(), "etc", "pki")
	dir := filepath.Join(parent, "virtconsole")
	if err := Create(dir, []string{"127.0.0.1"}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{parent: 0o755, filepath.Dir(parent): 0o755, dir: 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want&^umask(t) {
			t.Fatalf("%s: %v %v, want mode %04o", p, fi, err, want&^umask(t))
		}
	}
}

// umask is the process's file mode creation mask, read from /proc
// (setting it to read it would race with parallel tests).
func umask(t *testing.T) os.FileMode {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "\nUmask:\t")
	m, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 8, 32)
	if err != nil {
		t.Fatalf("no umask in /proc/self/status: %v", err)
	}
	return os.FileMode(m)
}
