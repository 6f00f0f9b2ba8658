package tlscreds

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Result is the outcome of one check of a cert directory.
type Result struct {
	// Name says what was checked, e.g. "CA basic constraints".
	Name string
	// File is the file checked, relative to the directory
	// ("server-cert.pem").
	File string
	// Err is nil when the check passed, else a *CheckError.
	Err error
	// Skipped is set (with a nil Err) when the check could not run
	// because a file it needs failed an earlier check.
	Skipped bool
}

// CheckError is a failed check: one line naming the file, what is wrong
// and what to do, e.g.
//
//	tls: server-cert.pem in /etc/pki/virtconsole: certificate expired on 2026-01-02; renew it
type CheckError struct {
	Dir  string
	File string
	// Reason is what is wrong and the fix, on one line.
	Reason string
	// Err is the underlying cause, if any.
	Err error
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("tls: %s in %s: %s", e.File, e.Dir, e.Reason)
}

func (e *CheckError) Unwrap() error { return e.Err }

// The checks, in the order Check runs them. For each file: it is
// readable and parses; then the CA's constraints, key usage and validity;
// the certificate's CA flag, key usage, extended key usage, validity and
// signature by the CA; the key's permissions, parse and match with the
// certificate.
const (
	checkRead        = "readable"
	checkParse       = "parses as PEM"
	checkCAIsCA      = "CA basic constraints (CA:TRUE)"
	checkCAKeyUsage  = "CA key usage (keyCertSign)"
	checkValidity    = "inside validity period"
	checkNotCA       = "not a CA"
	checkKeyUsage    = "key usage"
	checkExtKeyUsage = "extended key usage"
	checkSignedByCA  = "signed by " + CACertFile
	checkKeyPerm     = "not readable by others"
	checkKeyMatch    = "matches the certificate"
)

// Check runs every check on dir for role at time now and returns them
// all, in order, passed or not. Checks that need a file that failed to
// load are returned Skipped.
func Check(dir string, role Role, now time.Time) []Result {
	results, _ := check(dir, role, now)
	return results
}

// material is what the checks loaded, for Load.
type material struct {
	cas   []*x509.Certificate
	chain []*x509.Certificate // leaf first
	key   crypto.Signer
}

type checker struct {
	dir     string
	now     time.Time
	results *[]Result
}

func (k checker) pass(file, name string) {
	*k.results = append(*k.results, Result{Name: name, File: file})
}

func (k checker) skip(file string, names ...string) {
	for _, n := range names {
		*k.results = append(*k.results, Result{Name: n, File: file, Skipped: true})
	}
}

func (k checker) fail(file, name string, cause error, format string, args ...any) {
	reason := strings.Join(strings.Fields(fmt.Sprintf(format, args...)), " ")
	*k.results = append(*k.results, Result{Name: name, File: file, Err: &CheckError{Dir: k.dir, File: file, Reason: reason, Err: cause}})
}

// failedSince reports whether a check appended after index i failed.
func (k checker) failedSince(i int) bool {
	for _, r := range (*k.results)[i:] {
		if r.Err != nil {
			return true
		}
	}
	return false
}

func check(dir string, role Role, now time.Time) ([]Result, *material) {
	var results []Result
	k := checker{dir: dir, now: now, results: &results}
	m := &material{}

	caStart := len(results)
	m.cas = checkCA(&results, dir, CACertFile, now)
	caFailed := k.failedSince(caStart)

	m.chain = k.checkLeaf(role, m.cas, caFailed)
	m.key = k.checkKey(role, m.chain)
	return results, m
}

// checkCA runs the checks of a CA bundle and returns its certificates, or
// nil when the file cannot be used at all.
func checkCA(results *[]Result, dir, file string, now time.Time) []*x509.Certificate {
	k := checker{dir: dir, now: now, results: results}
	cas := k.readCerts(file, "the PEM certificate of the CA that issued the server and client certificates")
	if cas == nil {
		k.skip(file, checkCAIsCA, checkCAKeyUsage, checkValidity)
		return nil
	}

	// Each check fails on the first certificate of the bundle it rejects;
	// a rule returns why, or "".
	for _, r := range []struct {
		name string
		why  func(*x509.Certificate) string
	}{
		{checkCAIsCA, func(c *x509.Certificate) string {
			if !c.BasicConstraintsValid || !c.IsCA {
				return "is not a CA (basic constraints CA:TRUE missing); use the certificate of the CA that issued the server and client certificates"
			}
			return ""
		}},
		{checkCAKeyUsage, func(c *x509.Certificate) string {
			if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
				return "key usage does not allow signing certificates (keyCertSign missing); reissue the CA with keyCertSign"
			}
			return ""
		}},
		{checkValidity, func(c *x509.Certificate) string {
			return validity(c, now, "renew the CA and reissue the certificates it signed")
		}},
	} {
		failed := false
		for _, c := range cas {
			if why := r.why(c); why != "" {
				k.fail(file, r.name, nil, "%s %s", describe(c, len(cas)), why)
				failed = true
				break
			}
		}
		if !failed {
			k.pass(file, r.name)
		}
	}
	return cas
}

// checkLeaf runs the checks of role's certificate and returns its chain
// (leaf first), or nil when the file cannot be used at all.
func (k checker) checkLeaf(role Role, cas []*x509.Certificate, caFailed bool) []*x509.Certificate {
	file := role.CertFile()
	chain := k.readCerts(file, fmt.Sprintf("the %s certificate (PEM) issued by the CA in %s", role, CACertFile))
	if chain == nil {
		k.skip(file, checkNotCA, checkKeyUsage, checkExtKeyUsage, checkValidity, checkSignedByCA)
		return nil
	}
	leaf := chain[0]

	if leaf.BasicConstraintsValid && leaf.IsCA {
		k.fail(file, checkNotCA, nil, "is a CA certificate (%q), not a %s certificate; use the %s certificate issued by that CA", leaf.Subject.String(), role, role)
	} else {
		k.pass(file, checkNotCA)
	}

	if leaf.KeyUsage != 0 && leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment) == 0 {
		k.fail(file, checkKeyUsage, nil, "key usage allows neither digitalSignature nor keyEncipherment; reissue it with digitalSignature and keyEncipherment")
	} else {
		k.pass(file, checkKeyUsage)
	}

	ekuOK := hasEKU(leaf, roleEKU(role))
	if !ekuOK {
		other := RoleServer
		if role == RoleServer {
			other = RoleClient
		}
		if hasEKU(leaf, roleEKU(other)) {
			k.fail(file, checkExtKeyUsage, nil, "has no %s usage (it is a %s certificate); use a %s certificate", ekuName(roleEKU(role)), other, role)
		} else {
			k.fail(file, checkExtKeyUsage, nil, "has no %s usage (extended key usage: %s); reissue it with %s", ekuName(roleEKU(role)), ekuList(leaf), ekuName(roleEKU(role)))
		}
	} else {
		k.pass(file, checkExtKeyUsage)
	}

	if reason := validity(leaf, k.now, "renew it"); reason != "" {
		k.fail(file, checkValidity, nil, "certificate %s", reason)
	} else {
		k.pass(file, checkValidity)
	}

	if cas == nil {
		k.skip(file, checkSignedByCA)
		return chain
	}
	k.checkSigned(file, role, chain, cas, caFailed, ekuOK)
	return chain
}

// checkSigned verifies chain against cas. Problems that the CA checks
// already reported (CA:TRUE missing, expired CA) do not fail it again:
// it fails when the CA did not sign the certificate, or when the chain
// fails for a reason reported nowhere else.
func (k checker) checkSigned(file string, role Role, chain, cas []*x509.Certificate, caFailed, ekuOK bool) {
	leaf := chain[0]
	at := k.now
	if at.Before(leaf.NotBefore) || at.After(leaf.NotAfter) {
		// Validity is reported on its own: verify inside it.
		at = leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
	}
	opts := x509.VerifyOptions{
		Roots:         poolOf(cas),
		Intermediates: poolOf(chain[1:]),
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	_, err := leaf.Verify(opts)
	switch {
	case err == nil:
	case !signedByAny(chain[len(chain)-1], cas):
		top := chain[len(chain)-1]
		k.fail(file, checkSignedByCA, err, "not signed by the CA in %s (issued by %q); use a %s certificate issued by that CA, or put the CA that issued it in %s", CACertFile, top.Issuer.String(), role, CACertFile)
		return
	case caFailed:
		// Signed by the CA; the CA's own failures are reported above.
		k.pass(file, checkSignedByCA)
		return
	default:
		k.fail(file, checkSignedByCA, err, "does not verify against %s: %s; reissue it from that CA", CACertFile, oneLine(err))
		return
	}

	if ekuOK {
		opts.KeyUsages = []x509.ExtKeyUsage{roleEKU(role)}
		if _, err := leaf.Verify(opts); err != nil {
			k.fail(file, checkSignedByCA, err, "the CA chain does not allow %s usage: %s; use a CA that may issue %s certificates", ekuName(roleEKU(role)), oneLine(err), role)
			return
		}
	}
	k.pass(file, checkSignedByCA)
}

// checkKey runs the checks of role's private key and returns it, or nil
// when it cannot be used.
func (k checker) checkKey(role Role, chain []*x509.Certificate) crypto.Signer {
	file := role.KeyFile()
	path := filepath.Join(k.dir, file)
	data, err := os.ReadFile(path)
	if err != nil {
		k.failRead(file, err, fmt.Sprintf("the private key of %s", role.CertFile()))
		k.skip(file, checkKeyPerm, checkParse, checkKeyMatch)
		return nil
	}
	k.pass(file, checkRead)

	if fi, err := os.Stat(path); err != nil {
		k.fail(file, checkKeyPerm, err, "cannot stat it: %s", oneLine(err))
	} else if mode := fi.Mode().Perm(); mode&0o004 != 0 {
		k.fail(file, checkKeyPerm, nil, "private key is readable by others (mode %04o); run chmod o-rwx on it (0600, or 0640 with the group of the daemon that reads it)", mode)
	} else {
		k.pass(file, checkKeyPerm)
	}

	key, reason := parseKey(data)
	if key == nil {
		k.fail(file, checkParse, nil, "%s", reason)
		k.skip(file, checkKeyMatch)
		return nil
	}
	k.pass(file, checkParse)

	if chain == nil {
		k.skip(file, checkKeyMatch)
		return key
	}
	pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		k.fail(file, checkKeyMatch, nil, "does not match %s; use the key %s was issued for, or reissue the certificate for this key", role.CertFile(), role.CertFile())
		return nil
	}
	k.pass(file, checkKeyMatch)
	return key
}

// readCerts runs the read and parse checks of a PEM certificate file.
// what describes the file's expected content for the fix.
func (k checker) readCerts(file, what string) []*x509.Certificate {
	data, err := os.ReadFile(filepath.Join(k.dir, file))
	if err != nil {
		k.failRead(file, err, what)
		k.skip(file, checkParse)
		return nil
	}
	k.pass(file, checkRead)

	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			k.fail(file, checkParse, err, "certificate %d is not a valid X.509 certificate (%s); replace it with %s", len(certs)+1, oneLine(err), what)
			return nil
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		if _, err := x509.ParseCertificate(data); err == nil {
			k.fail(file, checkParse, nil, "certificate is DER, not PEM; convert it with openssl x509 -inform der -in %s -out %s", file, file)
		} else {
			k.fail(file, checkParse, nil, "no PEM CERTIFICATE block; put %s there", what)
		}
		return nil
	}
	k.pass(file, checkParse)
	return certs
}

func (k checker) failRead(file string, err error, what string) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		k.fail(file, checkRead, err, "file not found; put %s there (virtconsole certs create makes a test set)", what)
	case errors.Is(err, fs.ErrPermission):
		k.fail(file, checkRead, err, "permission denied; make it readable by the user running virtconsole")
	default:
		k.fail(file, checkRead, err, "cannot read it: %s", oneLine(err))
	}
}

// parseKey parses a PEM private key in PKCS#1, PKCS#8 or SEC 1 (EC)
// form. On failure it returns a nil key and the reason with the fix.
func parseKey(data []byte) (crypto.Signer, string) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			continue
		}
		if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
			return nil, "private key is encrypted; decrypt it (openssl pkey -in KEY -out KEY.plain) and protect it with file permissions instead"
		}
		var key any
		var err error
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		}
		if err != nil {
			return nil, fmt.Sprintf("cannot parse %s block: %s; use a PEM key in PKCS#1, PKCS#8 or EC form", block.Type, oneLine(err))
		}
		switch key := key.(type) {
		case *rsa.PrivateKey:
			return key, ""
		case *ecdsa.PrivateKey:
			return key, ""
		case ed25519.PrivateKey:
			return key, ""
		}
		return nil, fmt.Sprintf("unsupported private key type %T; use an RSA, ECDSA or Ed25519 key", key)
	}
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return nil, "no PEM PRIVATE KEY block; put the private key (PEM) there"
	}
	return nil, "not a PEM private key; put the private key (PEM, PKCS#1, PKCS#8 or EC) there"
}

// validity returns "" when c is valid at now, else the reason with fix
// (used after "certificate").
func validity(c *x509.Certificate, now time.Time, renew string) string {
	switch {
	case now.Before(c.NotBefore):
		return fmt.Sprintf("not valid before %s; check this host's clock, or wait", c.NotBefore.UTC().Format("2006-01-02 15:04 UTC"))
	case now.After(c.NotAfter):
		return fmt.Sprintf("expired on %s; %s", c.NotAfter.UTC().Format("2006-01-02"), renew)
	}
	return ""
}

// describe names c in messages about a bundle of n certificates.
func describe(c *x509.Certificate, n int) string {
	if n == 1 {
		return "certificate"
	}
	return fmt.Sprintf("certificate %q", c.Subject.String())
}

func roleEKU(r Role) x509.ExtKeyUsage {
	if r == RoleServer {
		return x509.ExtKeyUsageServerAuth
	}
	return x509.ExtKeyUsageClientAuth
}

// hasEKU reports whether c may be used for eku: it has no extended key
// usage extension, or the extension lists eku or any.
func hasEKU(c *x509.Certificate, eku x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	for _, u := range c.ExtKeyUsage {
		if u == eku || u == x509.ExtKeyUsageAny {
			return true
		}
	}
	return false
}

func ekuName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageAny:
		return "any"
	case x509.ExtKeyUsageServerAuth:
		return "serverAuth"
	case x509.ExtKeyUsageClientAuth:
		return "clientAuth"
	case x509.ExtKeyUsageCodeSigning:
		return "codeSigning"
	case x509.ExtKeyUsageEmailProtection:
		return "emailProtection"
	case x509.ExtKeyUsageTimeStamping:
		return "timeStamping"
	case x509.ExtKeyUsageOCSPSigning:
		return "OCSPSigning"
	}
	return fmt.Sprintf("usage %d", int(u))
}

func ekuList(c *x509.Certificate) string {
	var names []string
	for _, u := range c.ExtKeyUsage {
		names = append(names, ekuName(u))
	}
	for _, oid := range c.UnknownExtKeyUsage {
		names = append(names, oid.String())
	}
	return strings.Join(names, ", ")
}

// signedByAny reports whether one of cas holds the key that signed c,
// regardless of the CA's own constraints.
func signedByAny(c *x509.Certificate, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if ca.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil {
			return true
		}
	}
	return false
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
