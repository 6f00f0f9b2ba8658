package cmdutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/tunnel/termio"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// TestExitTable: every error the table knows, wrapped as the code that
// returns it wraps it, gets its documented exit code; texts that merely
// look like a class do not.
func TestExitTable(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("doing something: %w", err) }
	status := func(code int) error { return &wsconn.HandshakeError{StatusCode: code} }
	remoteAlert := &net.OpError{Op: "remote error", Err: errors.New("tls: bad certificate")}
	for _, tc := range []struct {
		name string
		err  error
		code int
	}{
		{"nil", nil, ExitOK},
		{"explicit code", WithCode(ExitTLS, errors.New("x")), ExitTLS},
		{"silent with code", &SilentError{Code: ExitTLS}, ExitTLS},
		{"reported keeps its code", Reported(&LostError{Err: io.EOF}), ExitLost},

		{"interrupted", wrap(context.Canceled), ExitInterrupted},
		{"interrupted while dialling", &DialError{Err: wrap(context.Canceled)}, ExitInterrupted},

		{"flag error", &FlagError{Err: errors.New("--x: bad")}, ExitUsage},
		{"pflag unknown flag", &pflag.NotExistError{}, ExitUsage},
		{"pflag bad value", &pflag.InvalidValueError{}, ExitUsage},
		{"pflag missing value", &pflag.ValueRequiredError{}, ExitUsage},
		{"pflag syntax", &pflag.InvalidSyntaxError{}, ExitUsage},
		{"TLS policy", wrap(&tlscreds.PolicyError{Msg: "tls: minimum version 1.0 is insecure"}), ExitUsage},
		{"busy listen address", ListenError("127.0.0.1:1", "--listen", wrap(syscall.EADDRINUSE)), ExitUsage},
		{"other listen failure", ListenError("127.0.0.1:1", "--listen", wrap(syscall.EACCES)), ExitFailure},

		{"lost session", &LostError{Err: remoteAlert}, ExitLost},
		{"proxy closed the session", wrap(&wsconn.CloseError{Code: 1011, Reason: "console closed unexpectedly"}), ExitLost},

		{"no token", fmt.Errorf("%w: give --token-file", ErrNoToken), ExitRefused},
		{"QEMU refused", &DialError{Err: wrap(&protocols.HandshakeError{Op: "vnc: QEMU", Reason: "bad password"})}, ExitRefused},
		{"console busy", wrap(consolestream.ErrConsoleBusy), ExitRefused},
		{"proxy 401", &DialError{Msg: "proxy refused", Err: status(401)}, ExitRefused},
		{"sessions API 401", wrap(&APIError{Status: 401}), ExitRefused},
		{"sessions API 403", wrap(&APIError{Status: 403}), ExitRefused},
		{"sessions API 404", wrap(&APIError{Status: 404}), ExitNotFound},
		{"sessions API 500", wrap(&APIError{Status: 500}), ExitFailure},
		{"proxy 403", status(403), ExitRefused},
		{"proxy 404", status(404), ExitRefused},
		{"proxy 429", status(429), ExitRefused},

		{"expect timed out", Reported(wrap(&termio.TimeoutError{Pattern: "x"})), ExitTimeout},

		{"no domain", wrap(libvirtapi.ErrDomainNotFound), ExitNotFound},
		{"no consoles", wrap(libvirtadmin.ErrNoConsoles), ExitNotFound},
		{"not enabled", wrap(libvirtadmin.ErrNotEnabled), ExitNotFound},
		{"no device", wrap(consolestream.ErrNoConsoleDevice), ExitNotFound},

		{"timeout", wrap(&TimeoutError{Err: context.DeadlineExceeded}), ExitTimeout},

		{"libvirt unreachable, TLS inside", fmt.Errorf("%w: %w", libvirtapi.ErrUnreachable, x509.UnknownAuthorityError{}), ExitUnreachable},
		{"proxy 502", status(502), ExitUnreachable},
		{"proxy 503", status(503), ExitUnreachable},
		{"proxy 504", status(504), ExitUnreachable},
		{"proxy 500", &DialError{Err: status(500)}, ExitFailure},

		{"credentials", wrap(&tlscreds.CheckError{Dir: "/pki", File: "ca-cert.pem", Reason: "missing"}), ExitTLS},
		{"explained handshake", &DialError{Err: &tlscreds.HandshakeError{Msg: "tls: …", Err: io.EOF}}, ExitTLS},
		{"verification", &DialError{Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}, ExitTLS},
		{"unknown authority", wrap(x509.UnknownAuthorityError{}), ExitTLS},
		{"invalid certificate", wrap(x509.CertificateInvalidError{Reason: x509.Expired}), ExitTLS},
		{"host name", wrap(x509.HostnameError{Host: "h"}), ExitTLS},
		{"no TLS on the port", &DialError{Err: tls.RecordHeaderError{}}, ExitTLS},
		{"alert", wrap(tls.AlertError(42)), ExitTLS},
		{"alert from the peer", &DialError{Err: remoteAlert}, ExitTLS},

		{"dial failed", &DialError{Msg: "QEMU at h:1 unreachable", Err: wrap(syscall.ECONNREFUSED)}, ExitUnreachable},
		{"handshake cut short", &DialError{Err: io.ErrUnexpectedEOF}, ExitUnreachable},
		{"timed out", &DialError{Err: os.ErrDeadlineExceeded}, ExitUnreachable},

		// Words are not classes: EINVAL's text is "invalid argument", and
		// "certificate" may be in any path.
		{"EINVAL", wrap(syscall.EINVAL), ExitFailure},
		{"a word", errors.New("open /etc/certificate/x: permission denied"), ExitFailure},
		{"unknown", errors.New("boom"), ExitFailure},
	} {
		if got := ExitCode(tc.err); got != tc.code {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.code)
		}
	}
}

// TestDialErrorText: a DialError reads as its message, or as its cause.
func TestDialErrorText(t *testing.T) {
	if s := (&DialError{Msg: "proxy p: no answer", Err: io.EOF}).Error(); s != "proxy p: no answer" {
		t.Errorf("with Msg: %q", s)
	}
	if s := (&DialError{Err: io.EOF}).Error(); s != "EOF" {
		t.Errorf("without Msg: %q", s)
	}
}
