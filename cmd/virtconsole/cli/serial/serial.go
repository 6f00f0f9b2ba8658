// Package serial implements "virtconsole serial": an interactive session
// on a VM's serial console.
package serial

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/tunnel/termio"
)

// Options are the flags of "virtconsole serial".
type Options struct {
	IO    *cmdutil.IOStreams
	Proxy connect.ProxyOptions

	Escape string
}

// NewCmdSerial returns "virtconsole serial". runF replaces the run
// function in tests; nil runs the command.
func NewCmdSerial(f *cmdutil.Factory, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "serial",
		Short: "Open an interactive session on a VM's serial console",
		Long: `Connect to a virtual machine's serial console through a virtconsole proxy.

With a terminal on standard input, the terminal is put into raw mode (every
key goes to the guest, Ctrl+C included) and restored however the session
ends; type the escape key (default Ctrl+]) to leave. Without a terminal,
standard input is copied to the console and the console's output to standard
output, and the command ends when standard input ends and the console's
remaining output has been drained, so scripts can use it.

The token comes from --token-file or ` + connect.EnvToken + `, never from the
command line, and is sent to the proxy in an Authorization header.

` + cmdutil.ExitCodesHelp,
		Example: `  # interactive, through a proxy with a private CA
  virtconsole serial --proxy wss://127.0.0.1:6443 --ca-file ./pki/ca-cert.pem --token-file ./mytoken

  # the token on the first line of stdin, the rest is typed into the console
  printf '%s\nuname -a\n' "$TOKEN" | virtconsole serial --proxy wss://proxy:6443 --token-file -

  # leave with Ctrl+A instead of Ctrl+]
  VIRTCONSOLE_TOKEN=$(cat ./mytoken) virtconsole serial --proxy wss://proxy:6443 --escape '^A'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Proxy.Resolve(f); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runSerial(cmd.Context(), f, opts)
		},
	}
	connect.AddProxyFlags(cmd, &opts.Proxy)
	cmd.Flags().StringVar(&opts.Escape, "escape", "^]", "`KEY` that ends an interactive session: ^X for Ctrl+X, or none")
	return cmd
}

func runSerial(ctx context.Context, f *cmdutil.Factory, opts *Options) error {
	esc, err := termio.ParseEscape(opts.Escape)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	token, err := opts.Proxy.ReadToken(f)
	if err != nil {
		return err
	}
	conn, err := opts.Proxy.Dial(ctx, token)
	if err != nil {
		return err
	}
	return Session(ctx, opts.IO, conn, esc)
}

// Session runs an interactive (or piped) session on an open console
// connection, and maps its end to an exit status.
func Session(ctx context.Context, io *cmdutil.IOStreams, conn net.Conn, esc int) error {
	s := &termio.Session{In: io.In, Out: io.Out, Escape: esc}
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
