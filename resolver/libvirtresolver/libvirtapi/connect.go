package libvirtapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// Connect opens a connection to u's libvirtd with c, or when c is nil
// with go-libvirt over u's transport, giving up when ctx ends. Its errors
// are *ConnectErrors.
func Connect(ctx context.Context, u *transport.URI, c Connector) (Libvirt, error) {
	if c == nil {
		c = func(ctx context.Context, _ string) (Libvirt, error) { return dial(ctx, u) }
	}
	l, err := c(ctx, u.Raw)
	if err != nil {
		return nil, Unreachable(u, err)
	}
	return l, nil
}

// dial connects go-libvirt over u's transport. Ending ctx closes the
// conn, so the connect returns (a dial in progress first runs to its own
// timeout, at most seconds).
func dial(ctx context.Context, u *transport.URI) (Libvirt, error) {
	d := &transport.Captured{Dialer: transport.Framed(u.Dialer)}
	stop := context.AfterFunc(ctx, d.Abort)
	l := libvirt.NewWithDialer(d)
	err := l.ConnectToURI(libvirt.RemoteURI(u.URL))
	if !stop() {
		if err == nil {
			l.Disconnect()
		}
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Unreachable wraps err, a failure to reach u's libvirtd, as a
// *ConnectError.
func Unreachable(u *transport.URI, err error) error {
	return &ConnectError{URI: u.Raw, Transport: u.Transport, Err: err}
}

// ErrUnreachable means libvirtd could not be reached or refused the
// connection. Errors wrapping it also match resolver.ErrUnavailable.
var ErrUnreachable = errors.New("libvirt unreachable")

// ConnectError is a failure to reach libvirtd at URI over Transport. Its
// message adds a hint at what to check; it matches ErrUnreachable and
// resolver.ErrUnavailable.
type ConnectError struct {
	URI       string
	Transport string
	Err       error
}

func (e *ConnectError) Error() string {
	hint := ""
	var ne net.Error
	msg := e.Err.Error()
	switch {
	case strings.Contains(msg, "could not read tls"):
		// go-libvirt's TLS dialer found no credentials.
		hint = " (the tls transport reads cacert.pem, clientcert.pem and clientkey.pem from ?pkipath=DIR, else from /etc/pki/CA and /etc/pki/libvirt)"
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:"):
		hint = " (libvirtd and this client must trust each other's certificates: check cacert.pem and clientcert.pem in the pkipath)"
	case e.Transport == "tls" && (errors.Is(e.Err, io.EOF) || errors.Is(e.Err, syscall.ECONNRESET)):
		// In TLS 1.3 libvirtd checks the client certificate after the
		// client's handshake is done, and refuses by hanging up.
		hint = " (libvirtd hung up after the TLS handshake: it does not accept clientcert.pem from the pkipath; issue it from the CA in libvirtd's ca_file, or check tls_allowed_dn_list)"
	case e.Transport == "ssh" && strings.HasPrefix(msg, "ssh: "):
		// The ssh dialer's errors say what to do already.
	case errors.As(e.Err, &ne) || errors.Is(e.Err, os.ErrNotExist):
		hint = " (is libvirtd running and reachable?)"
	}
	return fmt.Sprintf("cannot connect to libvirt at %s: %s%s", e.URI, OneLine(e.Err.Error()), hint)
}

func (e *ConnectError) Unwrap() error { return e.Err }

func (e *ConnectError) Is(target error) bool {
	return target == ErrUnreachable || target == resolver.ErrUnavailable
}
