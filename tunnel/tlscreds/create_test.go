package tlscreds

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
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
