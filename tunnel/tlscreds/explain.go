package tlscreds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// HandshakeError is a TLS failure explained for users: Msg is one line
// saying what went wrong and what to do; Err is the original error.
type HandshakeError struct {
	Msg string
	Err error
}

func (e *HandshakeError) Error() string { return e.Msg }
func (e *HandshakeError) Unwrap() error { return e.Err }

// TLS alerts (RFC 8446 §6) that say something about certificates or
// versions. crypto/tls reports a peer's alert as a *net.OpError with Op
// "remote error" whose Err prints as "tls: <description>".
const (
	alertHandshakeFailure     = 40
	alertBadCertificate       = 42
	alertUnsupportedCert      = 43
	alertCertificateRevoked   = 44
	alertCertificateExpired   = 45
	alertCertificateUnknown   = 46
	alertUnknownCA            = 48
	alertProtocolVersion      = 70
	alertInsufficientSecurity = 71
	alertCertificateRequired  = 116
	noAlert                   = -1
)

var alertByText = map[string]int{
	"tls: handshake failure":              alertHandshakeFailure,
	"tls: bad certificate":                alertBadCertificate,
	"tls: unsupported certificate":        alertUnsupportedCert,
	"tls: revoked certificate":            alertCertificateRevoked,
	"tls: expired certificate":            alertCertificateExpired,
	"tls: unknown certificate":            alertCertificateUnknown,
	"tls: unknown certificate authority":  alertUnknownCA,
	"tls: protocol version not supported": alertProtocolVersion,
	"tls: insufficient security level":    alertInsufficientSecurity,
	"tls: certificate required":           alertCertificateRequired,
}

// remoteAlert returns the alert the peer sent, and its text, or
// noAlert.
func remoteAlert(err error) (int, string) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "remote error" || oe.Err == nil {
		return noAlert, ""
	}
	var ae tls.AlertError
	if errors.As(oe.Err, &ae) {
		return int(ae), strings.TrimPrefix(ae.Error(), "tls: ")
	}
	text := oe.Err.Error()
	if a, ok := alertByText[text]; ok {
		return a, strings.TrimPrefix(text, "tls: ")
	}
	return noAlert, ""
}

// ExplainHandshakeError turns the TLS failures users can fix into
// one-line *HandshakeErrors that say what to do; peer describes the
// other side ("QEMU at 127.0.0.1:5901", "client at 10.0.0.7:51234"). c
// are the credentials this side used (nil for none); their Role says
// whether this side is the server or the client. Unknown errors pass
// through unchanged.
//
// In TLS 1.3 a server refuses a client certificate after the client's
// handshake has completed, so pass the error of the client's first read
// too.
func ExplainHandshakeError(err error, c *Creds, peer string) error {
	if err == nil {
		return nil
	}
	var he *HandshakeError
	if errors.As(err, &he) {
		return err
	}
	if peer == "" {
		peer = "the peer"
	}
	msg := explain(err, c, peer)
	if msg == "" {
		return err
	}
	return &HandshakeError{Msg: "tls: " + msg, Err: err}
}

func explain(err error, c *Creds, peer string) string {
	weServe := c != nil && c.Role == RoleServer
	peerRole, ourRole := RoleServer, RoleClient
	if weServe {
		peerRole, ourRole = RoleClient, RoleServer
	}

	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		issuer := ""
		if ua.Cert != nil {
			issuer = fmt.Sprintf(" (issued by %q)", ua.Cert.Issuer.String())
		}
		fix := "use the CA that signed its server certificate"
		if weServe {
			fix = "issue its client certificate from that CA"
		}
		return fmt.Sprintf("%s presented a certificate not signed by %s%s; %s", peer, c.caName(), issuer, fix)
	}

	var hn x509.HostnameError
	if errors.As(err, &hn) && hn.Certificate != nil {
		cert := hn.Certificate
		var names []string
		names = append(names, cert.DNSNames...)
		for _, ip := range cert.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 {
			return fmt.Sprintf("%s presented a certificate without subject alternative names (its common name %q is ignored); reissue it with %s as a DNS or IP subject alternative name", peer, cert.Subject.CommonName, hn.Host)
		}
		return fmt.Sprintf("%s presented a certificate for %s, not %s; connect to one of those names, or reissue it with %s as a subject alternative name", peer, strings.Join(names, ", "), hn.Host, hn.Host)
	}

	var ci x509.CertificateInvalidError
	if errors.As(err, &ci) && ci.Cert != nil {
		cert := ci.Cert
		switch ci.Reason {
		case x509.Expired:
			if time.Now().Before(cert.NotBefore) {
				return fmt.Sprintf("%s presented a certificate (%q) not valid before %s; check the clocks of both hosts", peer, cert.Subject.String(), cert.NotBefore.UTC().Format("2006-01-02 15:04 UTC"))
			}
			return fmt.Sprintf("%s presented a certificate (%q) that expired on %s; renew it", peer, cert.Subject.String(), cert.NotAfter.UTC().Format("2006-01-02"))
		case x509.IncompatibleUsage:
			want := ekuName(roleEKU(peerRole))
			return fmt.Sprintf("%s presented a certificate (%q) without %s usage; use a %s certificate", peer, cert.Subject.String(), want, peerRole)
		case x509.NotAuthorizedToSign:
			return fmt.Sprintf("%s presented a certificate chain in which %q is not a CA; reissue it from a proper CA", peer, cert.Subject.String())
		}
		return ""
	}

	if alert, text := remoteAlert(err); alert != noAlert {
		presented := c != nil && c.Cert != nil
		ours := "our certificate"
		if presented {
			ours = fmt.Sprintf("our certificate %s in %s", ourRole.CertFile(), c.Dir)
		}
		switch alert {
		case alertCertificateRequired:
			return fmt.Sprintf("%s requires a client certificate; use a cert directory with client-cert.pem and client-key.pem issued by a CA it trusts", peer)
		case alertBadCertificate, alertUnsupportedCert, alertCertificateUnknown, alertUnknownCA, alertCertificateRevoked:
			if !presented && !weServe {
				return fmt.Sprintf("%s refused the connection (alert: %s): it requires a client certificate; use a cert directory with client-cert.pem and client-key.pem issued by a CA it trusts", peer, text)
			}
			if weServe {
				return fmt.Sprintf("%s refused %s (alert: %s); the client must trust the CA that issued it and connect by a name the certificate lists", peer, ours, text)
			}
			return fmt.Sprintf("%s refused %s (alert: %s); use a %s certificate issued by a CA that %s trusts", peer, ours, text, ourRole, peer)
		case alertCertificateExpired:
			return fmt.Sprintf("%s says %s has expired (alert: %s); renew it, or check the clocks of both hosts", peer, ours, text)
		case alertProtocolVersion, alertInsufficientSecurity:
			return fmt.Sprintf("%s accepts no TLS version or cipher suite this side offers (alert: %s); align the minimum TLS version and cipher suites of both sides", peer, text)
		case alertHandshakeFailure:
			if !presented && !weServe {
				return fmt.Sprintf("%s refused the handshake (alert: %s): it may require a client certificate, or share no TLS version or cipher suite with this side", peer, text)
			}
			return fmt.Sprintf("%s refused the handshake (alert: %s): it shares no TLS version or cipher suite with this side; align the TLS policies of both sides", peer, text)
		}
		return ""
	}

	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		if weServe {
			return fmt.Sprintf("%s sent cleartext to this TLS listener; connect with TLS (wss:// or a TLS-enabled client)", peer)
		}
		return fmt.Sprintf("%s does not speak TLS on this port; check the port, and that TLS is enabled on it", peer)
	}

	s := err.Error()
	switch {
	case strings.Contains(s, "client didn't provide a certificate"):
		return fmt.Sprintf("%s presented no client certificate; it needs a client certificate issued by %s", peer, c.caName())
	case strings.Contains(s, "unsupported protocol version"), strings.Contains(s, "offered only unsupported versions"):
		return fmt.Sprintf("%s and this side have no TLS version in common; align the minimum TLS version of both sides (at least 1.2)", peer)
	case strings.Contains(s, "no cipher suite supported by both"), strings.Contains(s, "no mutually supported"):
		return fmt.Sprintf("%s and this side have no cipher suite in common; align the cipher suites of both sides", peer)
	}
	return ""
}
