package tlscreds

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Policy is the one TLS policy for every listener and dialer of the
// process: the minimum version and, for TLS 1.2, the cipher suites.
type Policy struct {
	// MinVersion is tls.VersionTLS12 or tls.VersionTLS13.
	MinVersion uint16
	// CipherSuites are the TLS 1.2 suites allowed, or nil for Go's
	// secure defaults. TLS 1.3 suites are not configurable in Go.
	CipherSuites []uint16
}

// PolicyError is a policy ParsePolicy refuses: an insecure or unknown
// minimum version or cipher suite. Msg says which and what to use.
type PolicyError struct{ Msg string }

func (e *PolicyError) Error() string { return e.Msg }

// DefaultPolicy is TLS 1.2 minimum with Go's secure default suites.
func DefaultPolicy() Policy {
	return Policy{MinVersion: tls.VersionTLS12}
}

// ParsePolicy builds a Policy from a minimum version ("1.2" or "1.3";
// "" means 1.2) and cipher suite names as spelled by tls.CipherSuites
// (none means Go's defaults). Older versions and the suites of
// tls.InsecureCipherSuites are refused. TLS 1.3 suite names are accepted
// and have no effect: Go always enables all of them. A refused value is a
// *PolicyError.
func ParsePolicy(minVersion string, cipherSuites []string) (Policy, error) {
	p := DefaultPolicy()
	switch strings.TrimPrefix(strings.ToLower(strings.TrimSpace(minVersion)), "tls") {
	case "", "1.2":
		p.MinVersion = tls.VersionTLS12
	case "1.3":
		p.MinVersion = tls.VersionTLS13
	case "1.0", "1.1":
		return Policy{}, &PolicyError{Msg: fmt.Sprintf("tls: minimum version %s is insecure; use 1.2 or 1.3", minVersion)}
	default:
		return Policy{}, &PolicyError{Msg: fmt.Sprintf("tls: unknown minimum version %q; use 1.2 or 1.3", minVersion)}
	}

	for _, name := range cipherSuites {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if i := slices.IndexFunc(tls.InsecureCipherSuites(), func(s *tls.CipherSuite) bool { return s.Name == name }); i >= 0 {
			return Policy{}, &PolicyError{Msg: fmt.Sprintf("tls: cipher suite %s is insecure; choose from %s", name, secureSuiteNames())}
		}
		i := slices.IndexFunc(tls.CipherSuites(), func(s *tls.CipherSuite) bool { return s.Name == name })
		if i < 0 {
			return Policy{}, &PolicyError{Msg: fmt.Sprintf("tls: unknown cipher suite %q; choose from %s", name, secureSuiteNames())}
		}
		s := tls.CipherSuites()[i]
		if !slices.Contains(s.SupportedVersions, tls.VersionTLS12) {
			continue // a TLS 1.3 suite: always on
		}
		if !slices.Contains(p.CipherSuites, s.ID) {
			p.CipherSuites = append(p.CipherSuites, s.ID)
		}
	}
	return p, nil
}

func secureSuiteNames() string {
	var names []string
	for _, s := range tls.CipherSuites() {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

func (p Policy) apply(cfg *tls.Config) {
	cfg.MinVersion = p.MinVersion
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	cfg.CipherSuites = slices.Clone(p.CipherSuites)
}

// ServerConfig returns the config of a listener presenting c.Cert. With
// requireClientCert, clients must present a certificate that verifies
// against c.CAs for clientAuth (mutual TLS).
func (c *Creds) ServerConfig(p Policy, requireClientCert bool) *tls.Config {
	cfg := &tls.Config{}
	p.apply(cfg)
	if c == nil {
		return cfg
	}
	if c.Cert != nil {
		cfg.Certificates = []tls.Certificate{*c.Cert}
	}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		cfg.ClientCAs = c.CAs
	}
	return cfg
}

// ClientConfig returns the config of a dialer that verifies the server's
// certificate against c.CAs (the system roots when c is nil or has no
// CA) and against serverName, a host name or IP address (a "host:port"
// has its port dropped). It presents c.Cert when there is one.
func (c *Creds) ClientConfig(p Policy, serverName string) *tls.Config {
	cfg := &tls.Config{ServerName: hostOnly(serverName)}
	p.apply(cfg)
	if c == nil {
		return cfg
	}
	cfg.RootCAs = c.CAs
	if c.Cert != nil {
		cfg.Certificates = []tls.Certificate{*c.Cert}
		// Present the certificate even when the server's list of
		// acceptable CAs does not name its issuer (crypto/tls would then
		// send none, as CAs made by Create have distinct names): the
		// server's refusal then names the real problem, a certificate
		// from another CA, not a missing one.
		cert := c.Cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if c.Cert == nil && c.certWanted {
		host := cfg.ServerName
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return nil, &HandshakeError{Msg: fmt.Sprintf("tls: %s requires a client certificate, and %s has none; add %s and %s issued by a CA it trusts",
				host, c.Dir, RoleClient.CertFile(), RoleClient.KeyFile())}
		}
	}
	return cfg
}

// hostOnly drops a port and IPv6 brackets from s.
func hostOnly(s string) string {
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
}
