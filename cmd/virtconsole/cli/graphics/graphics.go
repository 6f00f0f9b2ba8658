// Package graphics implements what "virtconsole vnc" and "virtconsole
// spice" share: a local listener for desktop viewers whose connections are
// tunnelled through the websocket proxy, or negotiated with QEMU directly.
// The protocol-specific parts come in a Spec.
package graphics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/forward"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// Spec is what differs between the graphics protocols.
type Spec struct {
	Kind    protocols.Kind
	Scheme  string // viewer URI scheme: "vnc", "spice"
	Short   string
	Long    string
	Example string
	// Handshaker returns the handshaker for direct mode.
	Handshaker func(tlsConfig func(host string) *tls.Config) protocols.Handshaker
	// Refuse tells a viewer, in its protocol, why its connection failed.
	Refuse func(ctx context.Context, viewer net.Conn, err error)
	// SessionSpansConnections: one viewer session opens several
	// connections (SPICE), which must share a token.
	SessionSpansConnections bool
}

// Options are the flags of a graphics command.
type Options struct {
	IO     *cmdutil.IOStreams
	Proxy  connect.ProxyOptions
	Local  connect.LocalOptions
	Domain connect.DomainOptions

	DomainName string

	// Direct mode.
	Target           string
	ConnectTLSDir    string
	ConnectInsecure  bool
	TLSTunnel        bool
	PasswordFile     string
	TLSMinVersion    string
	HandshakeTimeout time.Duration

	useProxy       bool
	domainPassword string
}

// NewCmd returns the command for spec.
func NewCmd(f *cmdutil.Factory, spec Spec, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:     spec.Scheme + " [DOMAIN]",
		Short:   spec.Short,
		Long:    spec.Long + "\n\n" + cmdutil.ExitCodesLine,
		Example: spec.Example,
		Args:    cobra.MaximumNArgs(1),
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
				if err := opts.Proxy.Resolve(f, cmd, "give DOMAIN (on a libvirt host), --proxy URL (or "+connect.EnvProxy+") with --token-file, or --target HOST:PORT"); err != nil {
					return err
				}
				opts.useProxy = true
			case opts.Proxy.Proxy != "":
				return &cmdutil.FlagError{Err: errors.New("give --proxy or --target (direct mode), not both")}
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return run(cmd.Context(), f, spec, opts)
		},
	}
	connect.AddProxyFlags(cmd, &opts.Proxy)
	connect.AddLocalFlags(cmd, &opts.Local, spec.Scheme)
	connect.AddDomainFlags(cmd, &opts.Domain)
	fl := cmd.Flags()
	fl.StringVar(&opts.Target, "target", "", "direct mode: QEMU's "+strings.ToUpper(spec.Scheme)+" server at `HOST:PORT` (no proxy, no token)")
	fl.StringVar(&opts.ConnectTLSDir, "connect-tls-dir", "", "direct mode: credentials toward QEMU in `DIR`")
	fl.BoolVar(&opts.ConnectInsecure, "connect-insecure", false, "direct mode: allow cleartext toward QEMU")
	fl.BoolVar(&opts.TLSTunnel, "tls-tunnel", false, "direct mode: QEMU's port is wrapped in TLS from the first byte (e.g. stunnel)")
	fl.StringVar(&opts.PasswordFile, "password-file", "", "direct mode: read QEMU's "+strings.ToUpper(spec.Scheme)+" password from `FILE`")
	fl.StringVar(&opts.TLSMinVersion, "tls-min-version", "1.2", "lowest TLS `VERSION` toward QEMU: 1.2 or 1.3")
	fl.DurationVar(&opts.HandshakeTimeout, "handshake-timeout", 15*time.Second, "direct mode: give up connecting and negotiating with QEMU after `DURATION`")
	return cmd
}

func run(ctx context.Context, f *cmdutil.Factory, spec Spec, opts *Options) error {
	handler, err := newHandler(ctx, f, spec, opts)
	if err != nil {
		return err
	}
	l, err := opts.Local.Listen()
	if err != nil {
		return err
	}
	argv, err := opts.Local.ViewerCommand(spec.Scheme, l.Addr(), f.Getenv)
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
	var ee interface{ ExitCode() int }
	if argv != nil && errors.As(viewerErr, &ee) && ee.ExitCode() > 0 {
		return cmdutil.WithCode(cmdutil.ExitFailure, fmt.Errorf("viewer %s exited with status %d", argv[0], ee.ExitCode()))
	}
	return nil
}

// newHandler returns the per-connection handler for proxy or direct mode.
func newHandler(ctx context.Context, f *cmdutil.Factory, spec Spec, opts *Options) (forward.Handler, error) {
	if opts.useProxy {
		tokens, err := newTokenSource(ctx, f, spec, opts)
		if err != nil {
			return nil, err
		}
		return connect.Handler(opts.IO.ErrOut, func(ctx context.Context, local net.Conn) (net.Conn, net.Conn, error) {
			token, done, err := tokens.get(ctx)
			if err != nil {
				return nil, nil, err
			}
			up, err := opts.Proxy.Dial(ctx, token)
			if err != nil {
				done()
				return nil, nil, err
			}
			return local, doneConn{up, done}, nil
		}, spec.Refuse), nil
	}
	if opts.DomainName != "" {
		lc, con, err := opts.Domain.DomainConsole(ctx, f, opts.DomainName, spec.Kind)
		if err != nil {
			return nil, err
		}
		lc.Close()
		opts.Target = con.Target.Address
		opts.domainPassword = con.Target.Password
		if con.Target.Insecure && !opts.ConnectInsecure && spec.Kind == protocols.KindSPICE {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("%s %d of %s has no TLS port; pass --connect-insecure to use its cleartext port", spec.Kind, opts.Domain.Index, opts.DomainName)}
		}
	}
	d, err := newDirect(spec, opts)
	if err != nil {
		return nil, err
	}
	return connect.Handler(opts.IO.ErrOut, d.open, spec.Refuse), nil
}

// directMode is what direct mode prepares once, from the flags, for every
// viewer connection.
type directMode struct {
	target    protocols.Target
	hs        protocols.Handshaker
	creds     *tlscreds.Creds               // nil without --connect-tls-dir
	tlsConfig func(host string) *tls.Config // nil without --connect-tls-dir
	timeout   time.Duration
}

func newDirect(spec Spec, opts *Options) (*directMode, error) {
	t := protocols.Target{Kind: spec.Kind, Address: opts.Target, Insecure: opts.ConnectInsecure, TLSTunnel: opts.TLSTunnel, Password: opts.domainPassword}
	d := &directMode{target: t, timeout: opts.HandshakeTimeout}
	if _, _, err := net.SplitHostPort(opts.Target); err != nil {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--target %q: want HOST:PORT", opts.Target)}
	}
	if opts.PasswordFile != "" {
		b, err := os.ReadFile(opts.PasswordFile)
		if err != nil {
			return nil, cmdutil.WithCode(cmdutil.ExitUsage, fmt.Errorf("password file: %w", err))
		}
		d.target.Password = strings.TrimRight(string(b), "\r\n")
	}
	if opts.ConnectTLSDir == "" {
		if !opts.ConnectInsecure {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("direct mode needs --connect-tls-dir DIR for TLS toward QEMU (or --connect-insecure for cleartext %s)", strings.ToUpper(spec.Scheme))}
		}
		if opts.TLSTunnel {
			return nil, &cmdutil.FlagError{Err: errors.New("--tls-tunnel needs --connect-tls-dir DIR")}
		}
		d.hs = spec.Handshaker(nil)
		return d, nil
	}
	policy, err := tlscreds.ParsePolicy(opts.TLSMinVersion, nil)
	if err != nil {
		return nil, &cmdutil.FlagError{Err: err}
	}
	if d.creds, err = connect.ClientCreds(opts.ConnectTLSDir); err != nil {
		return nil, err
	}
	// With credentials, TLS is used wherever QEMU offers it.
	if spec.Kind == protocols.KindSPICE {
		d.target.Insecure = false
	}
	d.tlsConfig = func(host string) *tls.Config { return d.creds.ClientConfig(policy, host) }
	d.hs = spec.Handshaker(d.tlsConfig)
	return d, nil
}

// open dials QEMU for one viewer connection and runs both legs of the
// handshake.
func (d *directMode) open(ctx context.Context, local net.Conn) (net.Conn, net.Conn, error) {
	hctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	t := d.target
	var cfg *tls.Config
	if d.tlsConfig != nil {
		cfg = d.tlsConfig(t.Host())
	}
	server, err := tunnel.DialTarget(hctx, nil, t, cfg)
	if err != nil && d.creds != nil && t.TLSFromFirstByte() {
		err = tlscreds.ExplainHandshakeError(err, d.creds, "QEMU at "+t.Address)
	}
	if err != nil {
		if connect.IsTLSError(err) {
			return nil, nil, cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("QEMU at %s: %w", t.Address, err))
		}
		return nil, nil, cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("QEMU at %s unreachable: %w", t.Address, err))
	}
	raw := server
	server, _, err = d.hs.Server(hctx, raw, t)
	if err != nil {
		raw.Close()
		return nil, nil, classify(err)
	}
	client, qemu, err := d.hs.Client(hctx, local, server)
	if err != nil {
		server.Close()
		return nil, nil, classify(err)
	}
	return client, qemu, nil
}

func classify(err error) error {
	var he *protocols.HandshakeError
	switch {
	case errors.As(err, &he):
		return cmdutil.WithCode(cmdutil.ExitRefused, err)
	case connect.IsTLSError(err):
		return cmdutil.WithCode(cmdutil.ExitTLS, err)
	}
	return cmdutil.WithCode(cmdutil.ExitUnreachable, err)
}

// doneConn calls done once when it is closed.
type doneConn struct {
	net.Conn
	done func()
}

func (c doneConn) Close() error {
	err := c.Conn.Close()
	c.done()
	return err
}

// CloseWrite passes a half-close on.
func (c doneConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
