// Package spice implements "virtconsole spice": a local listener for SPICE
// viewers, each connection (one per SPICE channel) tunnelled through the
// websocket proxy, or connected to QEMU's TLS port directly.
package spice

import (
	"context"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/graphics"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/spice"
)

// Spec describes SPICE to the graphics command.
var Spec = graphics.Spec{
	Kind:   protocols.KindSPICE,
	Scheme: "spice",
	Short:  "Serve a VM's SPICE console to local viewers",
	Long: `Listen on a local port for SPICE viewers (remote-viewer, spicy).

A SPICE session is several connections, one per channel (main, display,
inputs, cursor, playback, record, usbredir…). Through a proxy (--proxy), each
becomes its own websocket carrying the session's token; the proxy connects to
QEMU's TLS port, follows the session's channels, and can make the token
single-use. When the console has a SPICE password, the proxy supplies it: the
viewer needs none.

With DOMAIN (a libvirt name, UUID or ID; -c picks the libvirt URI), the token
is read from libvirt when a proxy is given (the console must be enabled: see
"virtconsole enable"), afresh for every viewer session since tokens may be
single-use; without a proxy, the TLS port and password are read from the
domain and virtconsole connects directly.

In direct mode (--target or DOMAIN, no proxy) virtconsole connects to QEMU's
TLS port with the credentials in --connect-tls-dir and supplies the password
from --password-file (or the domain). The plain port needs --connect-insecure.

The listener is on 127.0.0.1 unless --listen-address and --allow-remote say
otherwise: it hands out the console without asking for anything. It keeps
accepting until Ctrl+C (or --once, or the viewer it started exits).`,
	Example: `  # through a proxy; remote-viewer starts on the local port, and we exit with it
  virtconsole spice --proxy wss://proxy.example:6443 --token-file ./spicetoken --viewer auto

  # a libvirt domain through a proxy, the token read from libvirt
  virtconsole spice myvm -c qemu:///system --proxy wss://proxy.example:6443 --viewer remote-viewer

  # direct to QEMU's SPICE TLS port
  virtconsole spice --target 10.0.0.5:5902 --connect-tls-dir /etc/pki/qemu --local-port 5930

  # one viewer, kept through proxy restarts: reconnect it to the same port
  virtconsole spice myvm --proxy wss://proxy.example:6443 --local-port 5930 --once --reconnect`,
	Refuse: func(ctx context.Context, viewer net.Conn, err error) {
		// Answer the viewer's link message with a link error.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, _, rerr := spice.ReadLink(rctx, viewer); rerr != nil {
			return
		}
		code := spice.LinkErrError
		if cmdutil.ExitCode(err) == cmdutil.ExitRefused {
			code = spice.LinkErrPermissionDenied
		}
		spice.Refuse(rctx, viewer, code)
	},
}

// NewCmdSPICE returns "virtconsole spice".
func NewCmdSPICE(f *cmdutil.Factory, runF func(context.Context, *graphics.Options) error) *cobra.Command {
	return graphics.NewCmd(f, Spec, runF)
}
