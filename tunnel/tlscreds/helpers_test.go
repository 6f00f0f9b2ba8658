package tlscreds

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// testPKI is a CA whose key the tests keep, to mint good and bad material.
type testPKI struct {
	ca    *x509.Certificate
	caPEM []byte
	key   crypto.Signer
}

var serial atomic.Int64

func nextSerial() *big.Int { return big.NewInt(serial.Add(1)) }

func genKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newPKI mints a CA; mod may change its template.
func newPKI(t *testing.T, name string, mod func(*x509.Certificate)) *testPKI {
	t.Helper()
	key := genKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testPKI{ca: ca, caPEM: pemCert(der), key: key}
}

// leaf mints a role certificate for 127.0.0.1 and localhost; mod may
// change its template. It returns the certificate and PKCS#8 key PEMs.
func (p *testPKI) leaf(t *testing.T, role Role, mod func(*x509.Certificate)) (certPEM, keyPEM []byte) {
	t.Helper()
	key := genKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: "test " + string(role)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{roleEKU(role)},
	}
	if role == RoleServer {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if mod != nil {
		mod(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, key.Public(), p.key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemCert(der), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}

// dir writes a complete, valid cert directory for both roles.
func (p *testPKI) dir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	writeTestFile(t, d, CACertFile, p.caPEM, 0o644)
	for _, r := range []Role{RoleServer, RoleClient} {
		c, k := p.leaf(t, r, nil)
		writeTestFile(t, d, r.CertFile(), c, 0o644)
		writeTestFile(t, d, r.KeyFile(), k, 0o600)
	}
	return d
}

func writeTestFile(t *testing.T, dir, name string, data []byte, mode os.FileMode) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
