package libvirtresolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket/dialers"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// DefaultURI is the libvirt URI used when none is given.
const DefaultURI = "qemu:///system"

// DefaultSocket is libvirtd's read-write socket for qemu:///system.
const DefaultSocket = "/run/libvirt/libvirt-sock"

// Dialer opens the transport to libvirtd. It has the shape of go-libvirt's
// socket.Dialer, so the dialers of go-libvirt's socket/dialers package can
// be passed as they are.
type Dialer interface {
	Dial() (net.Conn, error)
}

// DialerFunc adapts a function to Dialer.
type DialerFunc func() (net.Conn, error)

// Dial calls f.
func (f DialerFunc) Dial() (net.Conn, error) { return f() }

// Option configures Connect and New.
type Option func(*options)

type options struct {
	dialer        Dialer
	logger        *slog.Logger
	minBackoff    time.Duration
	maxBackoff    time.Duration
	resync        time.Duration
	streams       bool
	forceConsoles bool
	reusable      bool
	connector     libvirtapi.Connector
}

func buildOptions(opts []Option) options {
	o := options{
		logger:     slog.New(slog.DiscardHandler),
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 10 * time.Second,
		resync:     time.Minute,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithDialer makes every connection to libvirtd use d instead of the
// transport named by the URI (which still names the driver to open, e.g.
// qemu:///system). For tests and unusual transports.
func WithDialer(d Dialer) Option { return func(o *options) { o.dialer = d } }

// WithConnector makes every connection to libvirtd for the admin
// operations and the resolver come from c (console streams still use the
// URI's transport). For tests: a libvirtfake.Hypervisor's Connect.
func WithConnector(c libvirtapi.Connector) Option { return func(o *options) { o.connector = c } }

// WithLogger sets where the resolver logs connection changes and consoles
// it cannot serve. Token values are never logged. The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBackoff sets the delays between reconnection attempts after libvirtd
// went away: the first is min, each next one doubles, up to max.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithResync sets how often the resolver re-reads every running domain
// even without events (0 turns it off). It catches secret values changed
// behind its back (virsh secret-set-value), for which libvirt sends no
// event go-libvirt can route; Rotate does not need it. Default one minute.
func WithResync(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithConsoleStreams lets the resolver answer tokens of pty serial
// consoles with targets whose Dial opens libvirt's console stream: for a
// proxy running in the same process (such a target cannot travel over the
// REST API). Without it such tokens fail with an error wrapping
// ErrStreamOnly.
func WithConsoleStreams() Option { return func(o *options) { o.streams = true } }

// WithForceConsoles makes the Dial of console-stream targets (of the
// resolver and of Conn.Consoles) take over a console stream that another
// client holds (virsh console --force) instead of failing with
// ErrConsoleBusy.
func WithForceConsoles() Option { return func(o *options) { o.forceConsoles = true } }

// WithReusableTokens turns the resolver's single-use policy off: its
// SingleUse reports false, so a proxy lets a token open any number of
// sessions. By default tokens are single-use (see Resolver.Consume).
func WithReusableTokens() Option { return func(o *options) { o.reusable = true } }

// target is a parsed libvirt URI and how to reach it.
type target struct {
	raw       string
	u         *url.URL
	transport string // unix, tcp, tls or ssh
	dialer    Dialer
	// host is the hypervisor's address as seen from here, for consoles
	// listening on a wildcard address: the URI's host, or 127.0.0.1.
	host string
}

func parseURI(raw string, o *options) (*target, error) {
	if raw == "" {
		raw = DefaultURI
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("libvirt URI %q: want driver[+transport]://[host]/path, e.g. qemu:///system or qemu+tls://host/system", raw)
	}
	t := &target{raw: raw, u: u, transport: transportOf(u), dialer: o.dialer, host: u.Hostname()}
	if t.host == "" {
		t.host = "127.0.0.1"
	}
	if t.dialer == nil {
		if t.dialer, err = dialerForURI(u, t.transport); err != nil {
			return nil, fmt.Errorf("libvirt URI %s: %w", raw, err)
		}
	}
	return t, nil
}

// transportOf names the transport of a libvirt URI: the part after "+"
// in its scheme, else unix without a host and tls with one.
func transportOf(u *url.URL) string {
	if _, tr, ok := strings.Cut(u.Scheme, "+"); ok {
		return tr
	}
	if u.Host != "" {
		return "tls"
	}
	return "unix"
}

// dialerForURI builds a go-libvirt dialer for the transports libvirt's
// URIs name: unix, tcp, tls and ssh.
func dialerForURI(u *url.URL, transport string) (Dialer, error) {
	q := u.Query()
	switch transport {
	case "unix":
		sock := q.Get("socket")
		if sock == "" {
			sock = DefaultSocket
			if u.Path == "/session" {
				dir := os.Getenv("XDG_RUNTIME_DIR")
				if dir == "" {
					home, _ := os.UserHomeDir()
					dir = filepath.Join(home, ".cache")
				}
				sock = filepath.Join(dir, "libvirt", "libvirt-sock")
			}
		}
		return dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(5*time.Second)), nil
	case "tcp":
		opts := []dialers.RemoteOption{dialers.WithRemoteTimeout(10 * time.Second)}
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UsePort(p))
		}
		return dialers.NewRemote(u.Hostname(), opts...), nil
	case "tls":
		var opts []dialers.TLSOption
		if p := u.Port(); p != "" {
			opts = append(opts, dialers.UseTLSPort(p))
		}
		if pki := q.Get("pkipath"); pki != "" {
			opts = append(opts, dialers.UsePKIPath(pki))
		}
		if nv := q.Get("no_verify"); nv != "" {
			if n, err := strconv.Atoi(nv); err != nil {
				return nil, fmt.Errorf("no_verify=%q: want 0 or 1", nv)
			} else if n != 0 {
				opts = append(opts, dialers.WithInsecureNoVerify())
			}
		}
		return dialers.NewTLS(u.Hostname(), opts...), nil
	case "ssh", "libssh", "libssh2":
		d := &sshDialer{addr: u.Host, user: u.User.Username(), keyFile: q.Get("keyfile"),
			knownHosts: q.Get("known_hosts"), socket: q.Get("socket"), noVerify: q.Get("no_verify") == "1",
			timeout: 10 * time.Second}
		if u.Port() == "" {
			d.addr = net.JoinHostPort(u.Hostname(), "22")
		}
		if d.user == "" {
			cur, err := user.Current()
			if err != nil {
				return nil, fmt.Errorf("no user name in the URI and no current user: %w", err)
			}
			d.user = cur.Username
		}
		if d.socket == "" {
			d.socket = remoteSocket
		}
		return d, nil
	}
	return nil, fmt.Errorf("transport %q is not supported; use unix, tcp, tls or ssh", transport)
}

// ErrUnreachable means libvirtd could not be reached or refused the
// connection. Errors wrapping it also match resolver.ErrUnavailable.
var ErrUnreachable = errors.New("libvirt unreachable")

type connectError struct {
	uri       string
	transport string
	err       error
}

func (e *connectError) Error() string {
	hint := ""
	var ne net.Error
	msg := e.err.Error()
	switch {
	case strings.Contains(msg, "could not read tls"):
		// go-libvirt's TLS dialer found no credentials.
		hint = " (the tls transport reads cacert.pem, clientcert.pem and clientkey.pem from ?pkipath=DIR, else from /etc/pki/CA and /etc/pki/libvirt)"
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:"):
		hint = " (libvirtd and this client must trust each other's certificates: check cacert.pem and clientcert.pem in the pkipath)"
	case e.transport == "tls" && (errors.Is(e.err, io.EOF) || errors.Is(e.err, syscall.ECONNRESET)):
		// In TLS 1.3 libvirtd checks the client certificate after the
		// client's handshake is done, and refuses by hanging up.
		hint = " (libvirtd hung up after the TLS handshake: it does not accept clientcert.pem from the pkipath; issue it from the CA in libvirtd's ca_file, or check tls_allowed_dn_list)"
	case e.transport == "ssh" && strings.HasPrefix(msg, "ssh: "):
		// sshDialer's errors say what to do already.
	case errors.As(e.err, &ne) || errors.Is(e.err, os.ErrNotExist):
		hint = " (is libvirtd running and reachable?)"
	}
	return fmt.Sprintf("cannot connect to libvirt at %s: %s%s", e.uri, oneLine(e.err.Error()), hint)
}

func (e *connectError) Unwrap() error { return e.err }

func (e *connectError) Is(target error) bool {
	return target == ErrUnreachable || target == resolver.ErrUnavailable
}

// connect opens a connection to t's libvirtd with the connector of o, by
// default go-libvirt over t's transport, giving up when ctx ends.
func (t *target) connect(ctx context.Context, o *options) (libvirtapi.Libvirt, error) {
	connect := o.connector
	if connect == nil {
		connect = t.dial
	}
	l, err := connect(ctx, t.raw)
	if err != nil {
		return nil, &connectError{uri: t.raw, transport: t.transport, err: err}
	}
	return l, nil
}

// dial is the default connector: go-libvirt over t's transport.
func (t *target) dial(ctx context.Context, _ string) (libvirtapi.Libvirt, error) {
	type result struct {
		l   *libvirt.Libvirt
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l := libvirt.NewWithDialer(t.dialer)
		err := l.ConnectToURI(libvirt.RemoteURI(t.u))
		ch <- result{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.l, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				r.l.Disconnect()
			}
		}()
		return nil, ctx.Err()
	}
}

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
