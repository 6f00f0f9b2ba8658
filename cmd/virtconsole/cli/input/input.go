// Package input implements "virtconsole keys" and "virtconsole type":
// keystrokes into a VM's graphical console, over RFB (QEMU's extended key
// events with scancodes when QEMU offers them, else X keysyms) or over
// the SPICE inputs channel, paced so that QEMU's PS/2 queue drops nothing.
package input

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/keymap"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/protocols/spice/spiceclient"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// DefaultKeyDelay spaces key messages: QEMU's PS/2 keyboard queues 16
// scancode bytes and drops what arrives while the queue is full; about
// 10 ms between keys was measured to lose none under TCG.
const DefaultKeyDelay = 10 * time.Millisecond

// Options are the flags keys and type share.
type Options struct {
	IO    *cmdutil.IOStreams
	Route connect.Options

	// Protocol is "vnc" or "spice"; "" (not given) means vnc, or with
	// DOMAIN whichever graphics device it has.
	Protocol string
	KeyDelay time.Duration
	// Force: SPICE, direct: connect although a viewer may be on the
	// console (spice-server disconnects it).
	Force bool
}

// addFlags registers the route flags and the shared ones.
func addFlags(cmd *cobra.Command, o *Options) {
	connect.AddFlags(cmd, &o.Route, protocols.KindVNC)
	fl := cmd.Flags()
	fl.StringVar(&o.Protocol, "protocol", "", "the console's `PROTOCOL`: vnc or spice (default vnc; with DOMAIN, the graphics device it has)")
	fl.DurationVar(&o.KeyDelay, "key-delay", DefaultKeyDelay, "pause `DURATION` after every key press and release (QEMU's PS/2 queue drops keys that come faster)")
	fl.BoolVar(&o.Force, "force", false, "SPICE, direct: connect even though a SPICE viewer on the console would be disconnected")
}

// routeHelp is the part of the help the two commands share.
const routeHelp = `The console is reached the three ways the other client commands reach it:
DOMAIN on a libvirt host (directly, or through --proxy with the token read
from libvirt), --proxy with --token-file, or --target HOST:PORT straight to
QEMU with --connect-tls-dir (or --connect-insecure).

VNC: virtconsole connects as a viewer asking for a shared session, so a
viewer already on the console stays connected. When QEMU offers its extended
key events, keys are sent as scancodes (US layout) and the guest's keyboard
layout cannot garble them; otherwise as X keysyms, which QEMU maps with its
own keymap.

SPICE (--protocol spice, or a DOMAIN whose graphics are SPICE): keys go over
the SPICE inputs channel as scancodes. spice-server has one client at a time
and a new one disconnects the old: through the proxy a console with a viewer
is refused (the proxy answers 409); directly, virtconsole cannot tell whether
a viewer is connected and refuses unless --force.

Keys are paced by --key-delay (10ms): QEMU's PS/2 keyboard queue holds 16
bytes and drops keys that come faster than the guest reads them.`

// check validates the shared flags.
func (o *Options) check() error {
	switch o.Protocol {
	case "", "vnc", "spice":
	default:
		return &cmdutil.FlagError{Err: fmt.Errorf("--protocol %q: want vnc or spice", o.Protocol)}
	}
	if o.Route.Proxy.View {
		return &cmdutil.FlagError{Err: errors.New("--view asks the proxy to drop this client's input, and keys are input; leave --view out")}
	}
	if o.KeyDelay < 0 || o.KeyDelay > time.Second {
		return &cmdutil.FlagError{Err: fmt.Errorf("--key-delay %v: want 0 to 1s, e.g. 10ms", o.KeyDelay)}
	}
	return nil
}

// splitDomain separates DOMAIN from the other arguments: the first
// argument is DOMAIN unless --target, --token-file or the token's
// environment variable says there is none.
func splitDomain(f *cmdutil.Factory, o *Options, args []string) (domain, rest []string) {
	if o.Route.Direct.Target != "" || o.Route.Proxy.TokenFile != "" || f.Getenv(connect.EnvToken) != "" || len(args) == 0 {
		return nil, args
	}
	return args[:1], args[1:]
}

// session is an open keyboard on a console.
type session struct {
	press func(k keymap.Key, down bool) error
	close func()
}

// open resolves the route and connects a keyboard to the console.
func open(ctx context.Context, f *cmdutil.Factory, o *Options) (*session, error) {
	kind := protocols.KindVNC
	if o.Protocol == "spice" {
		kind = protocols.KindSPICE
	}
	route, err := o.Route.Resolve(ctx, f, kind)
	if err != nil && o.Protocol == "" && o.Route.DomainName() != "" &&
		(errors.Is(err, consolestream.ErrNoConsoleDevice) || errors.Is(err, libvirtadmin.ErrNoConsoles)) {
		// DOMAIN has no VNC device: its graphics may be SPICE.
		kind = protocols.KindSPICE
		route, err = o.Route.Resolve(ctx, f, kind)
	}
	if err != nil {
		return nil, err
	}
	var s *session
	if kind == protocols.KindSPICE {
		s, err = openSPICE(ctx, route, o)
	} else {
		s, err = openVNC(ctx, route, o)
	}
	if err != nil {
		route.Close()
		return nil, err
	}
	inner := s.close
	s.close = func() { inner(); route.Close() }
	return s, nil
}

// handshakeTimeout bounds a viewer handshake after the connection.
const handshakeTimeout = 20 * time.Second

// openVNC connects a shared RFB viewer, asks for QEMU's extended key
// events and reads one full update, by which QEMU has acknowledged them
// (or not).
func openVNC(ctx context.Context, route *connect.Route, o *Options) (*session, error) {
	conn, err := route.DialViewer(ctx)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	c, err := vncclient.Handshake(hctx, conn, vncclient.Options{ExtendedKeyEvents: true})
	if err != nil {
		conn.Close()
		return nil, &cmdutil.DialError{Err: err}
	}
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.Capture(); err != nil {
		conn.Close()
		return nil, &cmdutil.DialError{Err: err}
	}
	c.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return &session{press: c.KeyEvent, close: func() { stop(); conn.Close() }}, nil
}

// openSPICE links a main channel (a new SPICE session) and its inputs
// channel.
func openSPICE(ctx context.Context, route *connect.Route, o *Options) (*session, error) {
	if !route.Mode.Proxied() && !o.Force {
		return nil, &cmdutil.FlagError{Err: errors.New("typing into a SPICE console directly would disconnect a connected SPICE viewer (spice-server allows one client), and virtconsole cannot tell whether one is connected; pass --force if none is, or go through the proxy, which knows")}
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	mainConn, err := route.DialViewer(hctx)
	if err != nil {
		return nil, spiceBusy(err)
	}
	main, err := spiceclient.Open(hctx, mainConn, spiceclient.LinkOptions{})
	if err != nil {
		mainConn.Close()
		if route.Mode.Proxied() && spiceclient.Refused(err) == spice.LinkErrPermissionDenied {
			// The proxy refuses a second main channel of the token's
			// live session: someone is viewing with this token.
			return nil, busyError(err)
		}
		return nil, linkError(err)
	}
	inputsID := spice.ChannelID{Type: spice.ChannelInputs}
	if !slices.Contains(main.Channels, inputsID) {
		main.Close()
		return nil, fmt.Errorf("the SPICE server lists no inputs channel (it has %v)", main.Channels)
	}
	inConn, err := route.DialViewer(hctx)
	if err != nil {
		main.Close()
		return nil, spiceBusy(err)
	}
	inputs, err := spiceclient.Open(hctx, inConn, spiceclient.LinkOptions{ConnectionID: main.SessionID, Channel: inputsID})
	if err != nil {
		inConn.Close()
		main.Close()
		return nil, linkError(err)
	}
	closeAll := func() { inputs.Close(); main.Close() }
	// SPICE_MSG_INPUTS_INIT: the server is ready for keys.
	for inputs.Received(spice.MsgInputsInit) == 0 {
		select {
		case <-inputs.Done():
			closeAll()
			return nil, &cmdutil.DialError{Err: fmt.Errorf("the SPICE inputs channel closed before SPICE_MSG_INPUTS_INIT: %v", inputs.Err())}
		case <-hctx.Done():
			closeAll()
			return nil, &cmdutil.DialError{Err: fmt.Errorf("no SPICE_MSG_INPUTS_INIT on the inputs channel: %w", hctx.Err())}
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	return &session{press: inputs.KeyEvent, close: func() { stop(); closeAll() }}, nil
}

// spiceBusy says in words what the proxy's 409 means for SPICE.
func spiceBusy(err error) error {
	if he, ok := errors.AsType[*wsconn.HandshakeError](err); ok && he.StatusCode == http.StatusConflict {
		return busyError(err)
	}
	return err
}

// busyError is the refusal of a console a SPICE viewer is on (ExitRefused).
func busyError(err error) error {
	return cmdutil.WithCode(cmdutil.ExitRefused, &cmdutil.DialError{
		Msg: "a SPICE viewer is on this console and spice-server allows one client, which a new connection would disconnect; try again when it leaves",
		Err: err})
}

// linkError is a failed SPICE link: a refusal (a wrong password, say)
// is ExitRefused, anything else ExitUnreachable.
func linkError(err error) error {
	if spiceclient.Refused(err) != spice.LinkOK {
		return cmdutil.WithCode(cmdutil.ExitRefused, &cmdutil.DialError{Err: err})
	}
	return &cmdutil.DialError{Err: err}
}

// run opens a session, runs do on its keyboard and closes it. The last
// key's pause lets QEMU read it before the connection ends.
func run(ctx context.Context, f *cmdutil.Factory, o *Options, do func(press func(keymap.Key, bool) error) error) error {
	s, err := open(ctx, f, o)
	if err != nil {
		return err
	}
	defer s.close()
	if err := do(s.press); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &cmdutil.LostError{Err: fmt.Errorf("sending keys: %w", err)}
	}
	time.Sleep(max(o.KeyDelay, 50*time.Millisecond))
	return nil
}
