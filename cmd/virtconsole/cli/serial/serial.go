// Package serial implements "virtconsole serial": an interactive session
// on a VM's serial console.
package serial

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	pserial "github.com/virtconsole/virtconsole/protocols/serial"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/termio"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// Options are the flags of "virtconsole serial".
type Options struct {
	IO     *cmdutil.IOStreams
	Proxy  connect.ProxyOptions
	Domain connect.DomainOptions

	DomainName      string
	Type            string
	Force           bool
	ConnectTLSDir   string
	ConnectInsecure bool
	Escape          string
	Drain           time.Duration

	useProxy bool
}

// NewCmdSerial returns "virtconsole serial". runF replaces the run
// function in tests; nil runs the command.
func NewCmdSerial(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "serial [DOMAIN]",
		Short: "Open an interactive session on a VM's serial console",
		Long: `Connect to a virtual machine's serial console.

Without DOMAIN, through a virtconsole proxy: the token comes from --token-file
or ` + connect.EnvToken + `, never from the command line, and is sent to the proxy
in an Authorization header.

With DOMAIN (a libvirt name, UUID or ID; -c picks the libvirt URI):
  * with --proxy (or ` + connect.EnvProxy + `), the token is read from libvirt (the
    console must be enabled: see "virtconsole enable");
  * without a proxy, directly, like "virsh console": a pty console through
    libvirt's console stream (--force takes it over from another client), a
    TCP chardev over TLS with --connect-tls-dir (or cleartext with
    --connect-insecure). No enable step is needed.

With a terminal on standard input, the terminal is put into raw mode (every
key goes to the guest, Ctrl+C included) and restored however the session
ends; type the escape key (default Ctrl+]) to leave. Without a terminal,
standard input is copied to the console and the console's output to standard
output. When standard input ends, the command keeps reading the console
until it has been silent for --drain (every byte restarts the wait), then
ends with exit status 0, so scripts can use it; raise --drain for commands
that think longer before answering.

` + cmdutil.ExitCodesLine,
		Example: `  # interactive, through a proxy with a private CA
  virtconsole serial --proxy wss://127.0.0.1:6443 --ca-file ./pki/ca-cert.pem --token-file ./mytoken

  # on a hypervisor: the first serial console of myvm, like virsh console
  virtconsole serial myvm

  # through a proxy, the token read from libvirt
  virtconsole serial myvm -c qemu+ssh://hv1.example/system --proxy wss://proxy.example:6443

  # the token on the first line of stdin, the rest is typed into the console
  printf '%s\nuname -a\n' "$TOKEN" | virtconsole serial --proxy wss://proxy:6443 --token-file -

  # in a script: type a command, print the answer, end after 3 s of silence
  printf 'echo $((6*7))\n' | virtconsole serial myvm --drain 3s

  # leave with Ctrl+A instead of Ctrl+]
  virtconsole serial myvm --escape '^A'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.DomainName = args[0]
				use, err := opts.Proxy.ResolveOptional(f)
				if err != nil {
					return err
				}
				opts.useProxy = use
			} else {
				if err := opts.Proxy.Resolve(f, cmd, "give DOMAIN (on a libvirt host) or --proxy URL (or "+connect.EnvProxy+") with --token-file"); err != nil {
					return err
				}
				opts.useProxy = true
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runSerial(cmd.Context(), f, opts)
		},
	}
	connect.AddProxyFlags(cmd, &opts.Proxy)
	connect.AddDomainFlags(cmd, &opts.Domain)
	fl := cmd.Flags()
	fl.StringVar(&opts.Escape, "escape", "^]", "`KEY` that ends an interactive session: ^X for Ctrl+X, or none")
	fl.DurationVar(&opts.Drain, "drain", termio.DefaultDrain, "when standard input is not a terminal: after it ends, wait until the console has been silent for `DURATION`")
	fl.StringVar(&opts.Type, "type", "serial", "with DOMAIN: the device `TYPE`, serial or console")
	fl.BoolVar(&opts.Force, "force", false, "with DOMAIN, direct: take the console over from another client")
	fl.StringVar(&opts.ConnectTLSDir, "connect-tls-dir", "", "with DOMAIN, direct: credentials for a TLS chardev in `DIR`")
	fl.BoolVar(&opts.ConnectInsecure, "connect-insecure", false, "with DOMAIN, direct: allow a cleartext TCP chardev")
	return cmd
}

func runSerial(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	esc, err := termio.ParseEscape(opts.Escape)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	if opts.Drain <= 0 {
		return &cmdutil.FlagError{Err: fmt.Errorf("--drain %v: want a positive duration, e.g. 1s", opts.Drain)}
	}
	kind := protocols.Kind(opts.Type)
	if !kind.IsText() {
		return &cmdutil.FlagError{Err: fmt.Errorf("--type %q: want serial or console", opts.Type)}
	}
	var conn net.Conn
	switch {
	case opts.DomainName == "":
		token, err := opts.Proxy.ReadToken(f)
		if err != nil {
			return err
		}
		if conn, err = opts.Proxy.Dial(ctx, token); err != nil {
			return err
		}
	case opts.useProxy:
		token, err := opts.Domain.DomainToken(ctx, f, opts.DomainName, kind)
		if err != nil {
			return err
		}
		if conn, err = opts.Proxy.Dial(ctx, token); err != nil {
			return err
		}
	default:
		if conn, err = direct(ctx, f, opts, kind); err != nil {
			return err
		}
	}
	return Session(ctx, opts.IO, conn, esc, opts.Drain)
}

// direct opens a domain's console without a proxy.
func direct(ctx context.Context, f *cmdutil.Factory, opts *Options, kind protocols.Kind) (net.Conn, error) {
	lc, con, err := opts.Domain.DomainConsole(ctx, f, opts.DomainName, kind)
	if err != nil {
		return nil, err
	}
	t := con.Target
	if t.Network == libvirtresolver.Network {
		// The stream runs over this libvirt connection: it stays open for
		// the session and closes with the stream.
		c, err := lc.OpenConsole(ctx, opts.DomainName, con.Device, opts.Force)
		if err != nil {
			lc.Close()
			return nil, cmdutil.LibvirtError(err)
		}
		return closeBoth{c, lc}, nil
	}
	lc.Close()
	dctx, cancel := context.WithTimeout(ctx, opts.Proxy.Timeout)
	defer cancel()
	// Direct mode follows the chardev itself (Backend ends in " tls" when
	// QEMU serves TLS), not the proxy metadata.
	t.Insecure = !strings.HasSuffix(con.Backend, " tls")
	var creds *tlscreds.Creds
	var cfg *tls.Config
	switch {
	case t.Insecure && !opts.ConnectInsecure:
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("%s %d of %s is a cleartext TCP chardev at %s; pass --connect-insecure to use it", kind, opts.Domain.Index, opts.DomainName, t.Address)}
	case !t.Insecure && opts.ConnectTLSDir == "":
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("%s %d of %s is a TLS chardev at %s; give --connect-tls-dir DIR", kind, opts.Domain.Index, opts.DomainName, t.Address)}
	case !t.Insecure:
		if creds, err = connect.ClientCreds(opts.ConnectTLSDir); err != nil {
			return nil, err
		}
		cfg = creds.ClientConfig(tlscreds.DefaultPolicy(), t.Host())
	}
	c, err := tunnel.DialTarget(dctx, nil, t, cfg)
	if err != nil && creds != nil {
		err = tlscreds.ExplainHandshakeError(err, creds, "QEMU at "+t.Address)
	}
	if err != nil {
		code := cmdutil.ExitUnreachable
		if connect.IsTLSError(err) {
			code = cmdutil.ExitTLS
		}
		return nil, cmdutil.WithCode(code, fmt.Errorf("%s %d of %s at %s: %w", kind, opts.Domain.Index, opts.DomainName, t.Address, err))
	}
	c, _, err = pserial.Handshaker{}.Server(ctx, c, t)
	return c, err
}

// closeBoth is a console stream that also closes its libvirt connection.
type closeBoth struct {
	net.Conn
	lc interface{ Close() error }
}

func (c closeBoth) Close() error {
	err := c.Conn.Close()
	c.lc.Close()
	return err
}

// Session runs an interactive (or piped) session on an open console
// connection, and maps its end to an exit status.
func Session(ctx context.Context, io *cmdutil.IOStreams, conn net.Conn, esc int, drain time.Duration) error {
	s := &termio.Session{In: io.In, Out: io.Out, Escape: esc, Drain: drain}
	if io.IsStdinTTY() {
		restore, err := io.MakeRaw()
		if err != nil {
			conn.Close()
			return fmt.Errorf("terminal: %w", err)
		}
		defer restore()
		if esc >= 0 {
			fmt.Fprintf(io.ErrOut, "Connected to the console; type %s to leave.\r\n", termio.FormatEscape(esc))
		}
	} else {
		s.Escape = -1 // a pipe carries data, not keys: never cut it short
	}
	err := s.Run(ctx, conn)
	if io.IsStdinTTY() {
		fmt.Fprint(io.ErrOut, "\r\n")
	}
	switch {
	case err == nil, errors.Is(err, termio.ErrEscaped):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return cmdutil.WithCode(cmdutil.ExitLost, fmt.Errorf("console connection lost: %w", err))
}
