package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// remoteSocket is libvirtd's read-write socket on a remote host, reached
// over SSH unless the URI's ?socket= names another.
const remoteSocket = "/var/run/libvirt/libvirt-sock"

// sshDialer reaches libvirtd's unix socket on a remote host through an
// SSH connection (a direct-streamlocal channel, what libvirt's ssh
// transport does with a remote netcat).
//
// It replaces go-libvirt's SSH dialer, which never closes its SSH client:
// every libvirt connection, and so every console stream of the bundled
// server, would leave an SSH connection (and a process on the hypervisor)
// behind. Here closing the libvirt connection closes the SSH connection.
type sshDialer struct {
	addr       string // host:port
	user       string
	keyFile    string // "" for the default keys in ~/.ssh
	knownHosts string // "" for ~/.ssh/known_hosts
	socket     string
	noVerify   bool
	timeout    time.Duration
}

// newSSHDialer reads an ssh URI: user@host:port (port 22, the current
// user by default) and ?keyfile=, ?known_hosts=, ?socket=, ?no_verify=1.
func newSSHDialer(u *url.URL) (*sshDialer, error) {
	q := u.Query()
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

// Dial implements Dialer.
func (d *sshDialer) Dial() (net.Conn, error) {
	hostKey, err := d.hostKeyCallback()
	if err != nil {
		return nil, err
	}
	signers, closeAgent, err := d.signers()
	defer closeAgent()
	if err != nil {
		return nil, err
	}
	if len(signers) == 0 {
		return nil, fmt.Errorf("ssh: no key for %s@%s: give ?keyfile=, put one in ~/.ssh, or load one into ssh-agent", d.user, d.addr)
	}
	client, err := ssh.Dial("tcp", d.addr, &ssh.ClientConfig{
		User:            d.user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback: hostKey,
		Timeout:         d.timeout,
	})
	if err != nil {
		return nil, err
	}
	c, err := client.Dial("unix", d.socket)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("ssh: libvirtd's socket %s on %s: %w", d.socket, d.addr, err)
	}
	return &sshConn{Conn: c, client: client}, nil
}

func (d *sshDialer) hostKeyCallback() (ssh.HostKeyCallback, error) {
	if d.noVerify {
		return ssh.InsecureIgnoreHostKey(), nil //nolint:gosec // asked for with ?no_verify=1
	}
	file := d.knownHosts
	if file == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("ssh: no home directory for ~/.ssh/known_hosts: give ?known_hosts=")
		}
		file = filepath.Join(home, ".ssh", "known_hosts")
	}
	cb, err := knownhosts.New(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ssh: no known hosts file %s to check %s's host key against; add the key (ssh-keyscan, or connect once with ssh), or give ?known_hosts=", file, d.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh: known hosts %s: %w", file, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return fmt.Errorf("the host key of %s is not in %s; add it (ssh-keyscan, or connect once with ssh)", host, file)
			}
			return fmt.Errorf("the host key of %s does not match %s: the host changed its key, or this is not the host", host, file)
		}
		return err
	}, nil
}

// signers returns the keys to offer: ssh-agent's, then the key file's
// (or the first of ~/.ssh's usual keys). The agent connection must stay
// open until authentication is over: closeAgent ends it. A key file named
// in the URI that cannot be used is an error.
func (d *sshDialer) signers() (signers []ssh.Signer, closeAgent func(), err error) {
	closeAgent = func() {}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			closeAgent = func() { c.Close() }
			if s, err := agent.NewClient(c).Signers(); err == nil {
				signers = append(signers, s...)
			}
		}
	}
	if d.keyFile != "" {
		s, err := parseKey(d.keyFile)
		if err != nil {
			return nil, closeAgent, err
		}
		return append(signers, s), closeAgent, nil
	}
	if home, err := os.UserHomeDir(); err == nil {
		for _, k := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			if s, err := parseKey(filepath.Join(home, ".ssh", k)); err == nil {
				return append(signers, s), closeAgent, nil
			}
		}
	}
	return signers, closeAgent, nil
}

func parseKey(file string) (ssh.Signer, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("ssh: key %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	var pe *ssh.PassphraseMissingError
	if errors.As(err, &pe) {
		return nil, fmt.Errorf("ssh: key %s has a passphrase; load it into ssh-agent instead", file)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh: key %s: %w", file, err)
	}
	return s, nil
}

// sshConn is the channel to libvirtd's socket; closing it closes the SSH
// connection it runs on.
type sshConn struct {
	net.Conn
	client *ssh.Client
}

func (c *sshConn) Close() error {
	err := c.Conn.Close()
	c.client.Close()
	return err
}
