// Package serial implements "virtconsole serial": an interactive session
// on a VM's serial console.
package serial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
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

	// Script is --expect and --send, in command-line order.
	Script  []ScriptArg
	Timeout time.Duration
	Log     string

	Reconnect connect.ReconnectOptions
}

// ScriptArg is one --expect or --send, as given.
type ScriptArg struct {
	Expect bool // else --send
	Value  string
}

// scriptFlag is the pflag.Value of --expect or --send: both append to
// one list, so that their order on the command line is kept.
type scriptFlag struct {
	list   *[]ScriptArg
	expect bool
}

func (f scriptFlag) String() string { return "" }
func (f scriptFlag) Type() string {
	if f.expect {
		return "regex"
	}
	return "text"
}

func (f scriptFlag) Set(v string) error {
	*f.list = append(*f.list, ScriptArg{Expect: f.expect, Value: v})
	return nil
}

// Steps turns the script arguments into termio steps: each --expect
// starts a step, the --send after it completes it; a --send with no
// --expect before it (or after another --send) is a step of its own.
func Steps(args []ScriptArg) ([]termio.Step, error) {
	var steps []termio.Step
	for _, a := range args {
		if a.Expect {
			re, err := regexp.Compile(a.Value)
			if err != nil {
				return nil, &cmdutil.FlagError{Err: fmt.Errorf("--expect %q: %v", a.Value, strings.TrimPrefix(err.Error(), "error parsing regexp: "))}
			}
			steps = append(steps, termio.Step{Expect: re})
			continue
		}
		b, err := termio.ParseSend(a.Value)
		if err != nil {
			return nil, &cmdutil.FlagError{Err: err}
		}
		if n := len(steps); n > 0 && steps[n-1].Expect != nil && steps[n-1].Send == nil {
			steps[n-1].Send = b
		} else {
			steps = append(steps, termio.Step{Send: b})
		}
	}
	return steps, nil
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

Scripted sessions (--expect and --send, as expect(1) does): standard input is
not read and the terminal is left alone. The steps run in the order given:
each --expect REGEX (Go RE2 syntax; (?m) makes ^ and $ match at line ends,
(?i) ignores case) waits until the console's output since the previous match
(its last 64 KiB) matches, for up to --timeout each; each --send TEXT is sent
when the --expect before it matched, or at once if none comes before it.
TEXT understands C escapes: \n newline, \r carriage return (Enter on a pty
console), \t tab, \e escape, \a, \b, \0, \\ backslash, \xNN any byte (\x03 is
Ctrl+C). The console's output is copied to standard output as it arrives (or
to --log FILE). The command ends with exit status 0 once the last --expect
matched, or after a last --send, once the console has been silent for --drain.
An --expect that does not match in time ends it with exit status 8 and one
line naming the pattern, followed by the console's last lines.

--reconnect: when the session drops (the proxy restarts, the network breaks,
QEMU closes a TCP chardev) the command reconnects by itself, waiting 0.5s,
then twice as long each time up to 30s (each wait ±20% at random), and says
so on standard error, one line per attempt. While it waits, a terminal is
back in its normal mode (Ctrl+C ends the command; the escape key too, after
Enter); typed keys are dropped, while piped input waits for the next
connection. With DOMAIN and a proxy, each attempt reads a fresh token from
libvirt; a token from --token-file or the environment that the proxy refuses
on reconnect (single-use, revoked, expired) ends the command with exit
status 2 instead of retrying, as do TLS failures. A proxy or console that
cannot be reached is tried again until --reconnect-max (default: until
interrupted); so is the first connection, so that a script can start the
session while the VM or the proxy is still starting. A scripted session
continues at the step it was at.

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
  virtconsole serial myvm --escape '^A'

  # scripted: wait for the shell's prompt, run a command, wait for its answer
  virtconsole serial myvm --expect '# ' --send 'echo $((6*7))\n' --expect '42'

  # wait up to 5 minutes for a login prompt, log in, keep the output in a file
  virtconsole serial myvm --timeout 5m --log boot.log \
    --expect 'login: ' --send 'root\n' --expect '(?m)^# ' --send 'uptime\n' --expect 'load average'

  # stay connected through proxy restarts and guest reboots
  virtconsole serial myvm --proxy wss://proxy.example:6443 --reconnect`,
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
	fl.DurationVar(&opts.Drain, "drain", termio.DefaultDrain, "when standard input is not a terminal, or after a script's last --send: wait until the console has been silent for `DURATION`")
	fl.Var(scriptFlag{&opts.Script, true}, "expect", "scripted: wait until the console's output matches `REGEX` (repeatable; in order with --send)")
	fl.Var(scriptFlag{&opts.Script, false}, "send", "scripted: send `TEXT`, with C escapes such as \\n and \\r, once the --expect before it matched (repeatable)")
	fl.DurationVar(&opts.Timeout, "timeout", 30*time.Second, "scripted: how long each --expect may wait, `DURATION` (0: no limit)")
	fl.StringVar(&opts.Log, "log", "", "scripted: copy the console's output to `FILE` (created 0600, truncated) instead of standard output")
	connect.AddReconnectFlags(cmd, &opts.Reconnect, "when the session drops, reconnect with backoff (0.5s doubling to 30s, ±20%)")
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
	if opts.Timeout < 0 {
		return &cmdutil.FlagError{Err: fmt.Errorf("--timeout %v: want a positive duration, or 0 for no limit", opts.Timeout)}
	}
	if err := opts.Reconnect.Check(); err != nil {
		return err
	}
	steps, err := Steps(opts.Script)
	if err != nil {
		return err
	}
	if opts.Log != "" && len(steps) == 0 {
		return &cmdutil.FlagError{Err: errors.New("--log needs --expect or --send (an interactive session's output is the terminal)")}
	}
	kind := protocols.Kind(opts.Route.Domain.Type)
	if !kind.IsText() {
		return &cmdutil.FlagError{Err: fmt.Errorf("--type %q: want serial or console", opts.Route.Domain.Type)}
	}
	out := opts.IO.Out
	if opts.Log != "" {
		lf, err := os.OpenFile(opts.Log, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("--log: %w", err)}
		}
		defer lf.Close()
		out = lf
	}
	route, err := opts.Route.Resolve(ctx, f, kind)
	if err != nil {
		return err
	}
	defer route.Close()
	var rc *connect.Reconnector
	dial := route.Dial
	if opts.Reconnect.Enabled {
		rc = connect.NewReconnector(route, opts.Reconnect, opts.IO.ErrOut)
		// The first connection too: a VM that is starting, a proxy
		// that is restarting, are waited for.
		dial = func(ctx context.Context) (*connect.Conn, error) { return rc.Dial(ctx, "") }
	}
	conn, err := dial(ctx)
	if err != nil {
		return err
	}
	if len(steps) > 0 {
		s := &termio.Script{Steps: steps, Out: out, Timeout: opts.Timeout, Drain: opts.Drain}
		return Script(ctx, opts.IO.ErrOut, s, conn, rc)
	}
	return Session(ctx, opts.IO, conn, esc, opts.Drain, rc)
}

// Script runs a scripted session on an open console connection (and,
// with rc, on new ones when it drops), and maps its end to an exit
// status. A timeout is reported here, with the console's last lines.
func Script(ctx context.Context, errOut io.Writer, s *termio.Script, conn net.Conn, rc *connect.Reconnector) error {
	for {
		err := s.Run(ctx, conn)
		var te *termio.TimeoutError
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &te):
			reportTimeout(errOut, te)
			return cmdutil.Reported(err)
		case rc == nil || connect.Final(err):
			return lost(err)
		}
		if conn, err = rc.Redial(ctx, cause(err)); err != nil {
			return err
		}
	}
}

// reportTimeout prints te's line and the console's last lines.
func reportTimeout(errOut io.Writer, te *termio.TimeoutError) {
	if te.Tail == "" {
		fmt.Fprintf(errOut, "virtconsole: %s; the console printed nothing\n", te)
		return
	}
	fmt.Fprintf(errOut, "virtconsole: %s; the console's last output:\n", te)
	for _, line := range strings.Split(te.Tail, "\n") {
		fmt.Fprintf(errOut, "  | %s\n", line)
	}
}

// lost is the error of a session that ended before its end.
func lost(err error) error {
	if errors.Is(err, termio.ErrConsoleClosed) {
		return &cmdutil.LostError{Err: err}
	}
	return &cmdutil.LostError{Err: fmt.Errorf("console connection lost: %w", err)}
}

// cause says in a few words why a session ended, for the reconnect line.
func cause(err error) string {
	if err == nil || errors.Is(err, termio.ErrConsoleClosed) {
		return "the console closed"
	}
	return cmdutil.OneLine(err)
}

// Session runs an interactive (or piped) session on an open console
// connection (and, with rc, on new ones when it drops), and maps its end
// to an exit status. A terminal is in raw mode only while connected.
func Session(ctx context.Context, io *cmdutil.IOStreams, conn net.Conn, esc int, drain time.Duration, rc *connect.Reconnector) error {
	s := &termio.Session{In: io.In, Out: io.Out, Escape: esc, Drain: drain}
	tty := io.IsStdinTTY()
	if !tty {
		s.Escape = -1 // a pipe carries data, not keys: never cut it short
	}
	if rc != nil {
		rc.Wait = func(ctx context.Context, d time.Duration) error { return s.Wait(ctx, d, tty) }
	}
	for {
		err := connected(ctx, io, s, conn)
		var te *terminalError
		switch {
		case errors.Is(err, termio.ErrEscaped), err == nil && (rc == nil || s.InputEnded()):
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &te):
			return err
		case rc == nil || connect.Final(err) || s.InputEnded():
			return lost(err)
		}
		conn, err = rc.Redial(ctx, cause(err))
		switch {
		case errors.Is(err, termio.ErrEscaped):
			return nil
		case err != nil:
			return err
		}
	}
}

// terminalError is a failure to put the terminal into raw mode.
type terminalError struct{ err error }

func (e *terminalError) Error() string { return "terminal: " + e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// connected runs s on conn, the terminal (if any) in raw mode.
func connected(ctx context.Context, io *cmdutil.IOStreams, s *termio.Session, conn net.Conn) error {
	if io.IsStdinTTY() {
		restore, err := io.MakeRaw()
		if err != nil {
			conn.Close()
			return &terminalError{err}
		}
		defer restore()
		if s.Escape >= 0 {
			fmt.Fprintf(io.ErrOut, "Connected to the console; type %s to leave.\r\n", termio.FormatEscape(s.Escape))
		}
		defer fmt.Fprint(io.ErrOut, "\r\n")
	}
	return s.Run(ctx, conn)
}
