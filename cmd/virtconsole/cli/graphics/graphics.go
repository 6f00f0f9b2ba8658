// Package graphics implements what "virtconsole vnc" and "virtconsole
// spice" share: a local listener for desktop viewers, each connection
// dialled along the command's route (connect.Route): tunnelled through the
// websocket proxy, or negotiated with QEMU directly. The protocol-specific
// parts come in a Spec.
package graphics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/forward"
)

// Spec is what differs between the graphics protocols.
type Spec struct {
	Kind    protocols.Kind
	Scheme  string // viewer URI scheme: "vnc", "spice"
	Short   string
	Long    string
	Example string
	// Refuse tells a viewer, in its protocol, why its connection failed.
	Refuse func(ctx context.Context, viewer net.Conn, err error)
}

// Options are the flags of a graphics command.
type Options struct {
	IO        *cmdutil.IOStreams
	Route     connect.Options
	Local     connect.LocalOptions
	Reconnect connect.ReconnectOptions
}

// reconnectHelp is the help's paragraph on --reconnect.
const reconnectHelp = `With --reconnect, a viewer that connects while the proxy or QEMU cannot be
reached is kept waiting while the command tries again (0.5s, doubling up to
30s, ±20% at random; one line on standard error per attempt) instead of being
refused at once; a refused token and TLS failures are still told to the viewer
at once. With --once too, a session lost on the far side (a proxy restart, a
network cut) does not end the command: the listener stays open for the viewer
to connect again (remote-viewer's reconnect, or a new viewer), and the command
ends when a session ends normally (the viewer closed it, or the console did).`

// NewCmd returns the command for spec. runF replaces the run function in
// tests; nil runs the command.
func NewCmd(f *cmdutil.Factory, spec Spec, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:     spec.Scheme + " [DOMAIN]",
		Short:   spec.Short,
		Long:    spec.Long + "\n\n" + reconnectHelp + "\n\n" + cmdutil.ExitCodesLine,
		Example: spec.Example,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Route.Check(f, cmd, args); err != nil {
				return err
			}
			if err := opts.Reconnect.Check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return run(cmd.Context(), f, spec, opts)
		},
	}
	connect.AddFlags(cmd, &opts.Route, spec.Kind)
	connect.AddLocalFlags(cmd, &opts.Local, spec.Scheme)
	connect.AddReconnectFlags(cmd, &opts.Reconnect, "while the console cannot be reached, keep a new viewer waiting and retry with backoff; with --once, a lost session does not end the command")
	cmdutil.SetFlagGroup(cmd.Flags(), cmdutil.GroupListener, "reconnect", "reconnect-max")
	return cmd
}

func run(ctx context.Context, f *cmdutil.Factory, spec Spec, opts *Options) error {
	route, err := opts.Route.Resolve(ctx, f, spec.Kind)
	if err != nil {
		return err
	}
	defer route.Close()
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
	var rc *connect.Reconnector
	if opts.Reconnect.Enabled {
		rc = connect.NewReconnector(route, opts.Reconnect, opts.IO.ErrOut)
	}
	fw := &forward.Forwarder{Listener: l, Handler: connect.Handler(opts.IO.ErrOut, route, rc, spec.Refuse), Once: opts.Local.Once}
	var onceErr onceResult
	if opts.Local.Once && rc != nil {
		// Keep accepting after a lost session; the first session that
		// ends otherwise ends the command, as --once does.
		fw.Once = false
		fw.Handler = onceErr.wrap(fw.Handler, cancel)
	}
	err = fw.Serve(ctx)
	cancel()
	viewerDone.Wait()
	if err == nil {
		err = onceErr.get()
	}
	if err != nil {
		return err
	}
	var ee interface{ ExitCode() int }
	if argv != nil && errors.As(viewerErr, &ee) && ee.ExitCode() > 0 {
		return fmt.Errorf("viewer %s exited with status %d", argv[0], ee.ExitCode())
	}
	return nil
}

// onceResult is the end of --once --reconnect: the first viewer session
// that did not end lost.
type onceResult struct {
	mu  sync.Mutex
	err error
}

// wrap returns h, except that a session that ends other than lost records
// its result and calls end (which ends the command).
func (o *onceResult) wrap(h forward.Handler, end func()) forward.Handler {
	return func(ctx context.Context, local net.Conn) error {
		err := h(ctx, local)
		if cmdutil.ExitCode(err) == cmdutil.ExitLost || ctx.Err() != nil {
			return err
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		o.err = err
		end()
		return err
	}
}

func (o *onceResult) get() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}
