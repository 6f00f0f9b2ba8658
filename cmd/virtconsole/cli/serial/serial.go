// Package serial implements "virtconsole serial": an interactive session
// on a VM's serial console.
package serial

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/termio"
)

// Options are the flags of "virtconsole serial".
type Options struct {
	IO    *cmdutil.IOStreams
	Route connect.Options

	Escape string
	Drain  time.Duration
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
			if err := opts.Route.Check(f, cmd, args); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runSerial(cmd.Context(), f, opts)
		},
	}
	connect.AddFlags(cmd, &opts.Route, protocols.KindSerial)
	fl := cmd.Flags()
	fl.StringVar(&opts.Escape, "escape", "^]", "`KEY` that ends an interactive session: ^X for Ctrl+X, or none")
	fl.DurationVar(&opts.Drain, "drain", termio.DefaultDrain, "when standard input is not a terminal: after it ends, wait until the console has been silent for `DURATION`")
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
	kind := protocols.Kind(opts.Route.Domain.Type)
	if !kind.IsText() {
		return &cmdutil.FlagError{Err: fmt.Errorf("--type %q: want serial or console", opts.Route.Domain.Type)}
	}
	route, err := opts.Route.Resolve(ctx, f, kind)
	if err != nil {
		return err
	}
	defer route.Close()
	conn, err := route.Dial(ctx)
	if err != nil {
		return err
	}
	return Session(ctx, opts.IO, conn, esc, opts.Drain)
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
	return &cmdutil.LostError{Err: fmt.Errorf("console connection lost: %w", err)}
}
