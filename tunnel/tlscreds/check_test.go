package tlscreds

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadGood(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "good CA", nil)
	dir := p.dir(t)
	for _, role := range []Role{RoleServer, RoleClient} {
		c, err := Load(dir, role)
		if err != nil {
			t.Fatalf("Load(%s): %v", role, err)
		}
		if c.Cert == nil || c.Cert.Leaf == nil || c.CAs == nil || c.Role != role || c.CAFile != filepath.Join(dir, CACertFile) {
			t.Fatalf("Load(%s) = %+v", role, c)
		}
		for _, r := range Check(dir, role, time.Now()) {
			if r.Err != nil || r.Skipped {
				t.Errorf("%s %s: %+v", r.File, r.Name, r)
			}
		}
	}
}

func TestLoadGroupReadableKey(t *testing.T) {
	t.Parallel()
	dir := newPKI(t, "CA", nil).dir(t)
	if err := os.Chmod(filepath.Join(dir, "server-key.pem"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, RoleServer); err != nil {
		t.Fatalf("0640 key (QEMU convention) refused: %v", err)
	}
}

func TestLoadKeyForms(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "CA", nil)
	dir := p.dir(t)

	// RSA key in PKCS#1.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: nextSerial(), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"localhost"},
	}, p.ca, rsaKey.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, dir, "server-cert.pem", pemCert(der), 0o644)
	writeTestFile(t, dir, "server-key.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600)
	if _, err := Load(dir, RoleServer); err != nil {
		t.Fatalf("PKCS#1 RSA key: %v", err)
	}

	// EC key in SEC 1 form.
	ecKey := genKey(t)
	der, err = x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: nextSerial(), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, p.ca, ecKey.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, dir, "client-cert.pem", pemCert(der), 0o644)
	writeTestFile(t, dir, "client-key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), 0o600)
	if _, err := Load(dir, RoleClient); err != nil {
		t.Fatalf("EC key: %v", err)
	}
}

// TestCheckFailures mints bad material and checks that the first failure
// names the file and what is wrong, on one line.
func TestCheckFailures(t *testing.T) {
	t.Parallel()
	past := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)

	tests := []struct {
		name  string
		role  Role
		setup func(t *testing.T) string
		file  string
		check string
		want  string
	}{
		{
			name: "missing key", role: RoleServer,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				os.Remove(filepath.Join(dir, "server-key.pem"))
				return dir
			},
			file: "server-key.pem", check: checkRead, want: "file not found; put the private key of server-cert.pem there",
		},
		{
			name: "missing CA", role: RoleClient,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				os.Remove(filepath.Join(dir, CACertFile))
				return dir
			},
			file: CACertFile, check: checkRead, want: "file not found",
		},
		{
			name: "garbage certificate", role: RoleServer,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				writeTestFile(t, dir, "server-cert.pem", []byte("hello\n"), 0o644)
				return dir
			},
			file: "server-cert.pem", check: checkParse, want: "no PEM CERTIFICATE block",
		},
		{
			name: "DER certificate", role: RoleServer,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				b, _ := pem.Decode(readTestFile(t, dir, "server-cert.pem"))
				writeTestFile(t, dir, "server-cert.pem", b.Bytes, 0o644)
				return dir
			},
			file: "server-cert.pem", check: checkParse, want: "certificate is DER, not PEM; convert it with openssl x509 -inform der",
		},
		{
			name: "expired certificate", role: RoleServer,
			setup: func(t *testing.T) string {
				p := newPKI(t, "CA", func(c *x509.Certificate) { c.NotBefore = past.Add(-48 * time.Hour) })
				dir := p.dir(t)
				c, k := p.leaf(t, RoleServer, func(c *x509.Certificate) { c.NotBefore = past.Add(-24 * time.Hour); c.NotAfter = past })
				writeTestFile(t, dir, "server-cert.pem", c, 0o644)
				writeTestFile(t, dir, "server-key.pem", k, 0o600)
				return dir
			},
			file: "server-cert.pem", check: checkValidity, want: "certificate expired on 2026-01-02; renew it",
		},
		{
			name: "not yet valid", role: RoleClient,
			setup: func(t *testing.T) string {
				p := newPKI(t, "CA", nil)
				dir := p.dir(t)
				c, k := p.leaf(t, RoleClient, func(c *x509.Certificate) { c.NotBefore = time.Now().Add(2 * time.Hour) })
				writeTestFile(t, dir, "client-cert.pem", c, 0o644)
				writeTestFile(t, dir, "client-key.pem", k, 0o600)
				return dir
			},
			file: "client-cert.pem", check: checkValidity, want: "certificate not valid before",
		},
		{
			name: "expired CA", role: RoleServer,
			setup: func(t *testing.T) string {
				return newPKI(t, "CA", func(c *x509.Certificate) { c.NotBefore = past.Add(-time.Hour); c.NotAfter = past }).dir(t)
			},
			file: CACertFile, check: checkValidity, want: "certificate expired on 2026-01-02; renew the CA",
		},
		{
			name: "certificate from another CA", role: RoleClient,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				c, k := newPKI(t, "Other CA", nil).leaf(t, RoleClient, nil)
				writeTestFile(t, dir, "client-cert.pem", c, 0o644)
				writeTestFile(t, dir, "client-key.pem", k, 0o600)
				return dir
			},
			file: "client-cert.pem", check: checkSignedByCA, want: `not signed by the CA in ca-cert.pem (issued by "CN=Other CA")`,
		},
		{
			name: "CA without CA:TRUE", role: RoleServer,
			setup: func(t *testing.T) string {
				return newPKI(t, "CA", func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature }).dir(t)
			},
			file: CACertFile, check: checkCAIsCA, want: "certificate is not a CA (basic constraints CA:TRUE missing)",
		},
		{
			name: "CA without keyCertSign", role: RoleServer,
			setup: func(t *testing.T) string {
				// Go refuses to sign with such a CA; mint the leaves
				// with a good CA of the same key, then swap the CA.
				good := newPKI(t, "CA", nil)
				dir := good.dir(t)
				bad, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
					SerialNumber: nextSerial(), Subject: good.ca.Subject,
					NotBefore: good.ca.NotBefore, NotAfter: good.ca.NotAfter,
					BasicConstraintsValid: true, IsCA: true, KeyUsage: x509.KeyUsageDigitalSignature,
				}, good.ca, good.key.Public(), good.key)
				if err != nil {
					t.Fatal(err)
				}
				writeTestFile(t, dir, CACertFile, pemCert(bad), 0o644)
				return dir
			},
			file: CACertFile, check: checkCAKeyUsage, want: "key usage does not allow signing certificates (keyCertSign missing)",
		},
		{
			name: "server certificate used as a client certificate", role: RoleClient,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				writeTestFile(t, dir, "client-cert.pem", readTestFile(t, dir, "server-cert.pem"), 0o644)
				writeTestFile(t, dir, "client-key.pem", readTestFile(t, dir, "server-key.pem"), 0o600)
				return dir
			},
			file: "client-cert.pem", check: checkExtKeyUsage, want: "has no clientAuth usage (it is a server certificate); use a client certificate",
		},
		{
			name: "CA certificate as server certificate", role: RoleServer,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				writeTestFile(t, dir, "server-cert.pem", readTestFile(t, dir, CACertFile), 0o644)
				return dir
			},
			file: "server-cert.pem", check: checkNotCA, want: `is a CA certificate ("CN=CA"), not a server certificate`,
		},
		{
			name: "leaf key usage", role: RoleServer,
			setup: func(t *testing.T) string {
				p := newPKI(t, "CA", nil)
				dir := p.dir(t)
				c, k := p.leaf(t, RoleServer, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageCertSign })
				writeTestFile(t, dir, "server-cert.pem", c, 0o644)
				writeTestFile(t, dir, "server-key.pem", k, 0o600)
				return dir
			},
			file: "server-cert.pem", check: checkKeyUsage, want: "key usage allows neither digitalSignature nor keyEncipherment",
		},
		{
			name: "unrelated extended key usage", role: RoleServer,
			setup: func(t *testing.T) string {
				p := newPKI(t, "CA", nil)
				dir := p.dir(t)
				c, k := p.leaf(t, RoleServer, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} })
				writeTestFile(t, dir, "server-cert.pem", c, 0o644)
				writeTestFile(t, dir, "server-key.pem", k, 0o600)
				return dir
			},
			file: "server-cert.pem", check: checkExtKeyUsage, want: "has no serverAuth usage (extended key usage: codeSigning); reissue it with serverAuth",
		},
		{
			name: "key not matching", role: RoleServer,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				writeTestFile(t, dir, "server-key.pem", readTestFile(t, dir, "client-key.pem"), 0o600)
				return dir
			},
			file: "server-key.pem", check: checkKeyMatch, want: "does not match server-cert.pem",
		},
		{
			name: "key world-readable", role: RoleServer,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				if err := os.Chmod(filepath.Join(dir, "server-key.pem"), 0o644); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			file: "server-key.pem", check: checkKeyPerm, want: "private key is readable by others (mode 0644); run chmod o-rwx on it",
		},
		{
			name: "encrypted key", role: RoleClient,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				writeTestFile(t, dir, "client-key.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600)
				return dir
			},
			file: "client-key.pem", check: checkParse, want: "private key is encrypted",
		},
		{
			name: "garbage key", role: RoleClient,
			setup: func(t *testing.T) string {
				dir := newPKI(t, "CA", nil).dir(t)
				writeTestFile(t, dir, "client-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}), 0o600)
				return dir
			},
			file: "client-key.pem", check: checkParse, want: "cannot parse PRIVATE KEY block",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := tt.setup(t)
			_, err := Load(dir, tt.role)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var ce *CheckError
			if !errors.As(err, &ce) || ce.File != tt.file || ce.Dir != dir {
				t.Fatalf("Load: %v (%#v); want a CheckError for %s", err, err, tt.file)
			}
			msg := err.Error()
			prefix := "tls: " + tt.file + " in " + dir + ": "
			if !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("Load:\n got %q\nwant %q...%q", msg, prefix, tt.want)
			}

			// Check reports the same failure under the expected check.
			var first *Result
			for _, r := range Check(dir, tt.role, time.Now()) {
				if r.Err != nil {
					first = &r
					break
				}
			}
			if first == nil || first.File != tt.file || first.Name != tt.check || first.Err.Error() != msg {
				t.Errorf("Check: first failure %+v; want %s %q", first, tt.file, tt.check)
			}
		})
	}
}

func TestCheckSkipsWhatCannotRun(t *testing.T) {
	t.Parallel()
	dir := newPKI(t, "CA", nil).dir(t)
	os.Remove(filepath.Join(dir, "server-cert.pem"))
	var failed, skipped []string
	for _, r := range Check(dir, RoleServer, time.Now()) {
		if r.Err != nil {
			failed = append(failed, r.File+" "+r.Name)
		}
		if r.Skipped {
			skipped = append(skipped, r.File+" "+r.Name)
		}
	}
	if len(failed) != 1 || failed[0] != "server-cert.pem "+checkRead {
		t.Errorf("failed = %q", failed)
	}
	want := []string{
		"server-cert.pem " + checkParse, "server-cert.pem " + checkNotCA, "server-cert.pem " + checkKeyUsage,
		"server-cert.pem " + checkExtKeyUsage, "server-cert.pem " + checkValidity, "server-cert.pem " + checkSignedByCA,
		"server-key.pem " + checkKeyMatch,
	}
	if strings.Join(skipped, "|") != strings.Join(want, "|") {
		t.Errorf("skipped =\n%q\nwant\n%q", skipped, want)
	}
}

func TestCheckAtAnotherTime(t *testing.T) {
	t.Parallel()
	dir := newPKI(t, "CA", nil).dir(t)
	later := time.Now().Add(48 * time.Hour)
	var failed []string
	for _, r := range Check(dir, RoleClient, later) {
		if r.Err != nil {
			failed = append(failed, r.File+" "+r.Name)
		}
	}
	// The signature check is not failed again by the expired CA.
	want := CACertFile + " " + checkValidity + "|client-cert.pem " + checkValidity
	if strings.Join(failed, "|") != want {
		t.Errorf("failed = %q; want %q", failed, want)
	}
}

func TestLoadCAFile(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "CA", nil)
	dir := p.dir(t)
	c, err := LoadCAFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cert != nil || c.CAs == nil || c.Role != RoleClient || c.Dir != dir {
		t.Errorf("LoadCAFile = %+v", c)
	}

	_, err = LoadCAFile(filepath.Join(dir, "server-cert.pem"))
	if err == nil || err.Error() != "tls: server-cert.pem in "+dir+": certificate is not a CA (basic constraints CA:TRUE missing); use the certificate of the CA that issued the server and client certificates" {
		t.Errorf("LoadCAFile(leaf) = %v", err)
	}
	_, err = LoadCAFile(filepath.Join(dir, "nope.pem"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCAFile(missing) = %v; want fs.ErrNotExist", err)
	}
}

func TestLoadBadRole(t *testing.T) {
	if _, err := Load(t.TempDir(), "both"); err == nil {
		t.Error("Load accepted role \"both\"")
	}
	if _, err := ParseRole("peer"); err == nil {
		t.Error("ParseRole accepted \"peer\"")
	}
}
