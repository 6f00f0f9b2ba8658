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
	IO    *cmdutil.IOStreams
	Route connect.Options
	Local connect.LocalOptions
}

// NewCmd returns the command for spec. runF replaces the run function in
// tests; nil runs the command.
func NewCmd(f *cmdutil.Factory, spec Spec, runF func(context.Context, *Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:     spec.Scheme + " [DOMAIN]",
		Short:   spec.Short,
		Long:    spec.Long + "\n\n" + cmdutil.ExitCodesLine,
		Example: spec.Example,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.Route.Check(f, cmd, args); err != nil {
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
	fw := &forward.Forwarder{Listener: l, Handler: connect.Handler(opts.IO.ErrOut, route, spec.Refuse), Once: opts.Local.Once}
	err = fw.Serve(ctx)
	cancel()
	viewerDone.Wait()
	if err != nil {
		return err
	}
	var ee interface{ ExitCode() int }
	if argv != nil && errors.As(viewerErr, &ee) && ee.ExitCode() > 0 {
		return fmt.Errorf("viewer %s exited with status %d", argv[0], ee.ExitCode())
	}
	return nil
}
