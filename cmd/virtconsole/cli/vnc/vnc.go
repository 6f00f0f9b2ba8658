// Package vnc implements "virtconsole vnc": a local listener for VNC
// viewers, each connection tunnelled through the websocket proxy, or in
// direct mode negotiated with QEMU (VeNCrypt x509) by virtconsole itself.
package vnc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/forward"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// Options are the flags of "virtconsole vnc".
type Options struct {
	IO     *cmdutil.IOStreams
	Proxy  connect.ProxyOptions
	Local  connect.LocalOptions
	Domain connect.DomainOptions

	DomainName string
	useProxy   bool

	// Direct mode.
	Target          string
	ConnectTLSDir   string
	ConnectInsecure bool
	TLSTunnel       bool
	PasswordFile    string
	TLSMinVersion   string

	HandshakeTimeout time.Duration

	domainPassword string // the VNC password from the domain XML
}

// NewCmdVNC returns "virtconsole vnc".
func NewCmdVNC(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "vnc [DOMAIN]",
		Short: "Serve a VM's VNC console to local viewers",
		Long: `Listen on a local port for VNC viewers (remote-viewer, vncviewer, vncsnapshot…).

Through a proxy (--proxy), every viewer connection becomes its own websocket
session carrying the token; the proxy negotiates VeNCrypt x509 TLS (and the
VNC password) with QEMU, and the viewer speaks plain VNC with no password to
the local port.

With DOMAIN (a libvirt name, UUID or ID; -c picks the libvirt URI), the token
is read from libvirt when a proxy is given (the console must be enabled: see
"virtconsole enable"); without a proxy, the VNC address and password are read
from the domain and virtconsole connects directly.

In direct mode (--target or DOMAIN, no proxy) virtconsole negotiates with QEMU itself:
VeNCrypt x509 with the credentials in --connect-tls-dir (ca-cert.pem, and
client-cert.pem/client-key.pem when QEMU verifies clients) and the password
from --password-file. Cleartext VNC needs --connect-insecure.

The listener is on 127.0.0.1 unless --listen-address and --allow-remote say
otherwise: it hands out the console without asking for anything. It keeps
accepting viewers until Ctrl+C (or --once, or the viewer it started exits).
When QEMU or the proxy refuses, the viewer is told why in the VNC handshake.

` + cmdutil.ExitCodesHelp,
		Example: `  # through a proxy, then point a viewer at the printed address
  virtconsole vnc --proxy wss://proxy.example:6443 --token-file ./vnctoken --local-port 5999
  vncviewer 127.0.0.1::5999

  # pick a free port and start a viewer; exit when it closes
  virtconsole vnc --proxy wss://proxy.example:6443 --token-file ./vnctoken --viewer auto

  # a libvirt domain through a proxy, the token read from libvirt
  virtconsole vnc myvm -c qemu:///system --proxy wss://proxy.example:6443 --viewer auto

  # direct to QEMU's VeNCrypt port with client certificates and a VNC password
  virtconsole vnc --target 10.0.0.5:5901 --connect-tls-dir /etc/pki/qemu --password-file ./vncpass --local-port 0 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && opts.Target != "":
				return &cmdutil.FlagError{Err: errors.New("give DOMAIN or --target, not both")}
			case len(args) == 1:
				opts.DomainName = args[0]
				use, err := opts.Proxy.ResolveOptional(f)
				if err != nil {
					return err
				}
				opts.useProxy = use
			case opts.Target == "":
				if err := opts.Proxy.Resolve(f); err != nil {
					return err
				}
				opts.useProxy = true
			case opts.Proxy.Proxy != "":
				return &cmdutil.FlagError{Err: errors.New("give --proxy or --target (direct mode), not both")}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runVNC(cmd.Context(), f, opts)
		},
	}
	connect.AddProxyFlags(cmd, &opts.Proxy)
	connect.AddLocalFlags(cmd, &opts.Local, "vnc")
	connect.AddDomainFlags(cmd, &opts.Domain)
	fl := cmd.Flags()
	fl.StringVar(&opts.Target, "target", "", "direct mode: QEMU's VNC server at `HOST:PORT` (no proxy, no token)")
	fl.StringVar(&opts.ConnectTLSDir, "connect-tls-dir", "", "direct mode: credentials toward QEMU in `DIR`")
	fl.BoolVar(&opts.ConnectInsecure, "connect-insecure", false, "direct mode: allow cleartext VNC (None or VNC password without TLS)")
	fl.BoolVar(&opts.TLSTunnel, "tls-tunnel", false, "direct mode: QEMU's port is wrapped in TLS from the first byte (e.g. stunnel)")
	fl.StringVar(&opts.PasswordFile, "password-file", "", "direct mode: read the VNC password from `FILE`")
	fl.StringVar(&opts.TLSMinVersion, "tls-min-version", "1.2", "lowest TLS `VERSION` toward QEMU: 1.2 or 1.3")
	fl.DurationVar(&opts.HandshakeTimeout, "handshake-timeout", 15*time.Second, "direct mode: bound on connecting and negotiating with QEMU")
	return cmd
}

func runVNC(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	handler, err := newHandler(f, opts)
	if err != nil {
		return err
	}
	l, err := opts.Local.Listen()
	if err != nil {
		return err
	}
	argv, err := opts.Local.ViewerCommand("vnc", l.Addr(), f.Getenv)
	if err != nil {
		l.Close()
		return err
	}
	if err := opts.Local.Announce(opts.IO.Out, l.Addr()); err != nil {
		l.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var viewerErr error
	var viewerDone sync.WaitGroup
	if argv != nil {
		done, err := connect.StartViewer(ctx, argv, opts.IO.ErrOut)
		if err != nil {
			l.Close()
			return err
		}
		viewerDone.Add(1)
		go func() {
			defer viewerDone.Done()
			viewerErr = <-done
			cancel() // the viewer closed: we are done
		}()
	}
	fw := &forward.Forwarder{Listener: l, Handler: handler, Once: opts.Local.Once}
	err = fw.Serve(ctx)
	cancel()
	viewerDone.Wait()
	if err != nil {
		return err
	}
	if viewerErr != nil && argv != nil {
		var ee interface{ ExitCode() int }
		if errors.As(viewerErr, &ee) && ee.ExitCode() > 0 {
			return cmdutil.WithCode(cmdutil.ExitFailure, fmt.Errorf("viewer %s exited with status %d", argv[0], ee.ExitCode()))
		}
	}
	return nil
}

// newHandler returns the per-connection handler for proxy or direct mode.
func newHandler(f *cmdutil.Factory, opts *Options) (forward.Handler, error) {
	if opts.useProxy {
		var token string
		var err error
		if opts.DomainName != "" {
			token, err = opts.Domain.DomainToken(context.Background(), f, opts.DomainName, protocols.KindVNC)
		} else {
			token, err = opts.Proxy.ReadToken(f)
		}
		if err != nil {
			return nil, err
		}
		return connect.Handler(opts.IO.ErrOut, func(ctx context.Context, local net.Conn) (net.Conn, net.Conn, error) {
			up, err := opts.Proxy.Dial(ctx, token)
			return local, up, err
		}, refuse), nil
	}
	if opts.DomainName != "" {
		lc, con, err := opts.Domain.DomainConsole(context.Background(), f, opts.DomainName, protocols.KindVNC)
		if err != nil {
			return nil, err
		}
		lc.Close()
		opts.Target = con.Target.Address
		opts.domainPassword = con.Target.Password
	}
	target, hs, err := directTarget(opts)
	if err != nil {
		return nil, err
	}
	return connect.Handler(opts.IO.ErrOut, func(ctx context.Context, local net.Conn) (net.Conn, net.Conn, error) {
		return direct(ctx, opts, hs, target, local)
	}, refuse), nil
}

// refuse tells the viewer why, in RFB, so that it shows a reason instead
// of a dropped connection.
func refuse(ctx context.Context, local net.Conn, err error) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	vnc.Refuse(rctx, local, cmdutil.OneLine(err))
}

func directTarget(opts *Options) (protocols.Target, *vnc.Handshaker, error) {
	t := protocols.Target{Kind: protocols.KindVNC, Address: opts.Target, Insecure: opts.ConnectInsecure, TLSTunnel: opts.TLSTunnel}
	if _, _, err := net.SplitHostPort(opts.Target); err != nil {
		return t, nil, &cmdutil.FlagError{Err: fmt.Errorf("--target %q: want HOST:PORT", opts.Target)}
	}
	t.Password = opts.domainPassword
	if opts.PasswordFile != "" {
		b, err := os.ReadFile(opts.PasswordFile)
		if err != nil {
			return t, nil, cmdutil.WithCode(cmdutil.ExitUsage, fmt.Errorf("password file: %w", err))
		}
		t.Password = strings.TrimRight(string(b), "\r\n")
	}
	hs := &vnc.Handshaker{}
	if opts.ConnectTLSDir == "" {
		if !opts.ConnectInsecure {
			return t, nil, &cmdutil.FlagError{Err: errors.New("direct mode needs --connect-tls-dir DIR for VeNCrypt x509 (or --connect-insecure for cleartext VNC)")}
		}
		if opts.TLSTunnel {
			return t, nil, &cmdutil.FlagError{Err: errors.New("--tls-tunnel needs --connect-tls-dir DIR")}
		}
		return t, hs, nil
	}
	policy, err := tlscreds.ParsePolicy(opts.TLSMinVersion, nil)
	if err != nil {
		return t, nil, &cmdutil.FlagError{Err: err}
	}
	creds, err := connect.ClientCreds(opts.ConnectTLSDir)
	if err != nil {
		return t, nil, err
	}
	hs.TLSConfig = func(host string) *tls.Config { return creds.ClientConfig(policy, host) }
	return t, hs, nil
}

// direct dials QEMU and runs both legs of the VNC handshake.
func direct(ctx context.Context, opts *Options, hs *vnc.Handshaker, t protocols.Target, local net.Conn) (net.Conn, net.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, opts.HandshakeTimeout)
	defer cancel()
	var server net.Conn
	var err error
	if t.TLSFromFirstByte() {
		server, err = tunnel.DialTLS(hctx, &net.Dialer{}, t.Address, hs.TLSConfig(t.Host()))
	} else {
		server, err = (&net.Dialer{}).DialContext(hctx, "tcp", t.Address)
	}
	if err != nil {
		return nil, nil, cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("QEMU at %s unreachable: %w", t.Address, err))
	}
	server, _, err = hs.Server(hctx, server, t)
	if err != nil {
		server.Close()
		return nil, nil, classify(err)
	}
	client, server, err := hs.Client(hctx, local, server)
	if err != nil {
		server.Close()
		return nil, nil, cmdutil.WithCode(cmdutil.ExitLost, fmt.Errorf("viewer handshake: %w", err))
	}
	return client, server, nil
}

func classify(err error) error {
	var he *protocols.HandshakeError
	switch {
	case errors.As(err, &he):
		return cmdutil.WithCode(cmdutil.ExitRefused, err)
	case strings.Contains(err.Error(), "tls:") || strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "certificate"):
		return cmdutil.WithCode(cmdutil.ExitTLS, err)
	case errors.Is(err, io.EOF):
		return cmdutil.WithCode(cmdutil.ExitUnreachable, err)
	}
	return cmdutil.WithCode(cmdutil.ExitUnreachable, err)
}
