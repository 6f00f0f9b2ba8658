package tlscreds

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CreateOptions tune Create.
type CreateOptions struct {
	// Validity is how long the certificates are valid (default one year).
	Validity time.Duration
	// Now is the start of validity (default time.Now()); certificates are
	// valid from five minutes before it, for clock skew.
	Now time.Time
	// Force replaces existing files instead of refusing.
	Force bool
	// Share, if set, lets a group read some of the files: see Share.
	Share *Share
}

// Share lets a group read a cert dir, for a daemon that runs as another
// user than the files' owner (QEMU under libvirt; virtconsole under
// systemd's DynamicUser=): the directory becomes mode 0750 and Files
// mode 0640, all with group GID. The other files keep their modes (keys
// 0600, certificates 0644) and group.
type Share struct {
	GID   int
	Files []string
}

// QEMUFiles are what QEMU, a server, reads of a cert dir; the client key
// is virtconsole's alone.
var QEMUFiles = []string{CACertFile, RoleServer.CertFile(), RoleServer.KeyFile()}

// ErrInvalidHost is wrapped by Create's errors about its hosts argument.
var ErrInvalidHost = errors.New("want host names or IP addresses, without ports or URLs")

// CreatedFiles are the files Create writes, in order.
var CreatedFiles = []string{
	CACertFile,
	RoleServer.CertFile(), RoleServer.KeyFile(),
	RoleClient.CertFile(), RoleClient.KeyFile(),
}

// Create mints a throwaway CA (with a unique common name: see
// caCommonName) and, signed by it, a server certificate for hosts (each a
// DNS name or an IP address, the first also its common name) and a client
// certificate, and writes them to dir in the cert-dir convention (the
// CreatedFiles), for quick starts and tests. Keys are ECDSA P-256 in
// PKCS#8, mode 0600; dir is created with mode 0700 if it does not exist
// (missing parents 0755). The CA key is not kept: run Create again to
// change the hosts. Existing files are refused with an error wrapping fs.ErrExist
// unless opts.Force is set. With opts.Share, each shared file is written
// with its group and mode already set (a renewal never exposes a file its
// readers cannot read).
func Create(dir string, hosts []string, opts CreateOptions) error {
	if len(hosts) == 0 {
		return fmt.Errorf("tls: no host for the server certificate: %w", ErrInvalidHost)
	}
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, " /[]") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
			return fmt.Errorf("tls: %q: %w", h, ErrInvalidHost)
		}
	}
	if opts.Validity <= 0 {
		opts.Validity = 365 * 24 * time.Hour
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}

	// Missing parents (/etc/pki on a fresh Debian) are 0755 like the
	// system's, so that a daemon that is not root can reach dir.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("tls: cannot create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("tls: cannot create %s: %w", dir, err)
	}
	if opts.Share != nil {
		if err := share(dir, opts.Share.GID, 0o750); err != nil {
			return err
		}
	}
	if !opts.Force {
		var existing []string
		for _, f := range CreatedFiles {
			if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
				existing = append(existing, f)
			}
		}
		if len(existing) > 0 {
			return fmt.Errorf("tls: %s already holds %s: %w", dir, strings.Join(existing, ", "), fs.ErrExist)
		}
	}

	notBefore := opts.Now.Add(-5 * time.Minute)
	notAfter := opts.Now.Add(opts.Validity)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caName, err := caCommonName(hosts[0], opts.Now)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: caName, Organization: []string{"virtconsole"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := mint(caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}

	// Older QEMU (GnuTLS) requires keyEncipherment next to
	// digitalSignature whenever key usage is present, even for EC keys.
	leafUsage := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	server := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: []string{"virtconsole"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    leafUsage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			server.IPAddresses = append(server.IPAddresses, ip)
		} else {
			server.DNSNames = append(server.DNSNames, h)
		}
	}
	client := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "virtconsole client", Organization: []string{"virtconsole"}},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    leafUsage,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}

	files := map[string][]byte{CACertFile: pemCert(caDER)}
	for role, tmpl := range map[Role]*x509.Certificate{RoleServer: server, RoleClient: client} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		der, err := mint(tmpl, ca, key.Public(), caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		files[role.CertFile()] = pemCert(der)
		files[role.KeyFile()] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}

	for _, f := range CreatedFiles {
		mode, gid := os.FileMode(0o644), -1
		if strings.HasSuffix(f, "-key.pem") {
			mode = 0o600
		}
		if opts.Share != nil && slices.Contains(opts.Share.Files, f) {
			mode, gid = 0o640, opts.Share.GID
		}
		if err := writeFile(filepath.Join(dir, f), files[f], mode, gid); err != nil {
			return err
		}
	}
	return nil
}

// caCommonName names a new CA uniquely: "virtconsole CA", the first host,
// the date and a random suffix, so that an error naming a certificate's
// issuer tells one created CA from another. It stays within the 64
// characters X.509 allows a common name.
func caCommonName(host string, now time.Time) (string, error) {
	var suffix [3]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", err
	}
	if len(host) > 31 {
		host = host[:31]
	}
	return fmt.Sprintf("virtconsole CA %s %s %x", host, now.UTC().Format("2006-01-02"), suffix), nil
}

func mint(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("tls: cannot create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return der, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// writeFile writes data to path atomically with exactly mode and, unless
// gid is -1, group gid (a replaced key never keeps a looser mode of the
// file it replaces, and its readers never see it without their group).
func writeFile(path string, data []byte, mode os.FileMode, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tls: cannot write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if gid >= 0 {
		err = tmp.Chown(-1, gid)
	}
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		_, err = tmp.Write(data)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("tls: cannot write %s: %w", path, err)
	}
	return nil
}

// GrantGroup lets group gid read what QEMU needs in dir (QEMUFiles), as
// Share says, for a cert dir made before. Owners are kept.
func GrantGroup(dir string, gid int) error {
	if err := share(dir, gid, 0o750); err != nil {
		return err
	}
	for _, f := range QEMUFiles {
		if err := share(filepath.Join(dir, f), gid, 0o640); err != nil {
			return err
		}
	}
	return nil
}

// share gives path to group gid with mode.
func share(path string, gid int, mode os.FileMode) error {
	if err := os.Chown(path, -1, gid); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}
