// Package transport reaches libvirtd: it parses libvirt URIs
// (driver[+transport]://[user@][host][:port]/path[?params]) and dials the
// transports they name, unix, tcp, tls and ssh, as net.Conns, with
// go-libvirt's dialers where they serve and its own for ssh.
package transport

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt/socket/dialers"
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

// URI is a parsed libvirt URI and how to reach it.
type URI struct {
	Raw       string   // as given
	URL       *url.URL // parsed
	Transport string   // unix, tcp, tls or ssh
	Dialer    Dialer
	// Host is the hypervisor's address as seen from here, for consoles
	// listening on a wildcard address: the URI's host, or 127.0.0.1.
	Host string
}

// Parse parses a libvirt URI (DefaultURI when empty). Its Dialer is d, or
// when d is nil the one its transport names.
func Parse(raw string, d Dialer) (*URI, error) {
	if raw == "" {
		raw = DefaultURI
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("libvirt URI %q: want driver[+transport]://[host]/path, e.g. qemu:///system or qemu+tls://host/system", raw)
	}
	p := &URI{Raw: raw, URL: u, Transport: transportOf(u), Dialer: d, Host: u.Hostname()}
	if p.Host == "" {
		p.Host = "127.0.0.1"
	}
	if p.Dialer == nil {
		if p.Dialer, err = dialerFor(u, p.Transport); err != nil {
			return nil, fmt.Errorf("libvirt URI %s: %w", raw, err)
		}
	}
	return p, nil
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

// dialerFor builds the dialer of the transports libvirt's URIs name:
// unix, tcp, tls and ssh.
func dialerFor(u *url.URL, transport string) (Dialer, error) {
	switch transport {
	case "unix":
		return unixDialer(u), nil
	case "tcp":
		return tcpDialer(u), nil
	case "tls":
		return tlsDialer(u)
	case "ssh", "libssh", "libssh2":
		return newSSHDialer(u)
	}
	return nil, fmt.Errorf("transport %q is not supported; use unix, tcp, tls or ssh", transport)
}

// unixDialer dials ?socket=, else libvirtd's socket for the system or the
// user's session.
func unixDialer(u *url.URL) Dialer {
	sock := u.Query().Get("socket")
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
	return dialers.NewLocal(dialers.WithSocket(sock), dialers.WithLocalTimeout(5*time.Second))
}

func tcpDialer(u *url.URL) Dialer {
	opts := []dialers.RemoteOption{dialers.WithRemoteTimeout(10 * time.Second)}
	if p := u.Port(); p != "" {
		opts = append(opts, dialers.UsePort(p))
	}
	return dialers.NewRemote(u.Hostname(), opts...)
}

// tlsDialer reads its credentials from ?pkipath= (else libvirt's default
// places) when it dials; ?no_verify=1 skips checking libvirtd's.
func tlsDialer(u *url.URL) (Dialer, error) {
	q := u.Query()
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
}
