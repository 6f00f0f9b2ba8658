// Package tlscreds loads x509 credentials laid out in the QEMU/libvirt
// cert-dir convention, checks them before any connection is made, and is
// the one place in virtconsole that builds tls.Configs.
//
// A directory holds ca-cert.pem (one or more CA certificates) and, for a
// listener, server-cert.pem + server-key.pem, or, for a dialer,
// client-cert.pem + client-key.pem (PROTOCOLS.md §6). Load runs every
// check of Check and reports the first failure as one line that names the
// file and the fix, so users never meet a bare "handshake failed".
package tlscreds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Role says which certificate and key of a directory are used.
type Role string

// The two roles of the cert-dir convention.
const (
	// RoleServer uses server-cert.pem and server-key.pem (listeners).
	RoleServer Role = "server"
	// RoleClient uses client-cert.pem and client-key.pem (dialers).
	RoleClient Role = "client"
)

// CACertFile is the name of the CA bundle in a cert directory.
const CACertFile = "ca-cert.pem"

// ParseRole returns the Role spelled s ("server" or "client").
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleServer, RoleClient:
		return r, nil
	}
	return "", fmt.Errorf("unknown TLS role %q: want server or client", s)
}

// CertFile is the name of the role's certificate: server-cert.pem or
// client-cert.pem.
func (r Role) CertFile() string { return string(r) + "-cert.pem" }

// KeyFile is the name of the role's private key: server-key.pem or
// client-key.pem.
func (r Role) KeyFile() string { return string(r) + "-key.pem" }

// Creds are checked credentials, loaded once and shared by every
// connection that uses them. They are read-only after Load.
type Creds struct {
	// Dir is the cert directory (for LoadCAFile, the CA file's directory).
	Dir string
	// Role is the role the credentials were loaded for.
	Role Role
	// CAFile is the path of the CA bundle the peer is verified against.
	CAFile string
	// CAs holds the certificates of CAFile.
	CAs *x509.CertPool
	// Cert is the certificate (with Leaf set) and key presented to the
	// peer, or nil when none is presented (LoadCAFile).
	Cert *tls.Certificate

	// certWanted is set by LoadClient on credentials without Cert: a
	// server that asks for a certificate fails the handshake at once.
	certWanted bool
}

// Load reads dir for role and runs every check of Check against the
// current time. The first failure is returned as a *CheckError whose
// message is one line naming the file and the fix.
func Load(dir string, role Role) (*Creds, error) {
	if role != RoleServer && role != RoleClient {
		return nil, fmt.Errorf("tls: unknown role %q: want server or client", role)
	}
	results, m := check(dir, role, time.Now())
	if err := firstError(results); err != nil {
		return nil, err
	}
	cert := &tls.Certificate{PrivateKey: m.key, Leaf: m.chain[0]}
	for _, c := range m.chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return &Creds{
		Dir:    dir,
		Role:   role,
		CAFile: filepath.Join(dir, CACertFile),
		CAs:    poolOf(m.cas),
		Cert:   cert,
	}, nil
}

// LoadCAFile loads only a CA bundle, for a dialer that verifies its peer
// but presents no certificate. The CA checks of Check run on it.
func LoadCAFile(path string) (*Creds, error) {
	dir, file := filepath.Split(path)
	dir = filepath.Clean(dir)
	var results []Result
	cas := checkCA(&results, dir, file, time.Now())
	if err := firstError(results); err != nil {
		return nil, err
	}
	return &Creds{Dir: dir, Role: RoleClient, CAFile: path, CAs: poolOf(cas)}, nil
}

// LoadClient loads dir for a client of QEMU (or of another virtconsole):
// client-cert.pem and client-key.pem are presented when dir has them, and
// every check of Load runs; without them only ca-cert.pem is loaded, which
// is enough for QEMU with verify-peer off.
//
// QEMU asks for a client certificate only when it verifies clients, and
// then drops a client that sends none without saying why (in TLS 1.3,
// after the client's handshake has completed). So with credentials that
// have no certificate, a handshake in which the server asks for one fails
// at once with a *HandshakeError naming the files to add.
func LoadClient(dir string) (*Creds, error) {
	missing := func(f string) bool {
		_, err := os.Stat(filepath.Join(dir, f))
		return errors.Is(err, fs.ErrNotExist)
	}
	// Only one of the pair is a broken dir: Load says which is missing.
	if !missing(RoleClient.CertFile()) || !missing(RoleClient.KeyFile()) {
		return Load(dir, RoleClient)
	}
	c, err := LoadCAFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	c.certWanted = true
	return c, nil
}

// caName describes the CA bundle in messages: "ca-cert.pem in /pki", or
// "the system's trusted CAs" when there is none.
func (c *Creds) caName() string {
	if c == nil || c.CAFile == "" {
		return "the system's trusted CAs"
	}
	dir, file := filepath.Split(c.CAFile)
	return fmt.Sprintf("%s in %s", file, filepath.Clean(dir))
}

func poolOf(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func firstError(results []Result) error {
	for _, r := range results {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}
