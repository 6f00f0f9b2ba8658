// Package vnc implements "virtconsole vnc": a local listener for VNC
// viewers, each connection tunnelled through the websocket proxy, or in
// direct mode negotiated with QEMU (VeNCrypt x509) by virtconsole itself.
package vnc

import (
	"context"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/graphics"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/vnc"
)

// Spec describes VNC to the graphics command.
var Spec = graphics.Spec{
	Kind:   protocols.KindVNC,
	Scheme: "vnc",
	Short:  "Serve a VM's VNC console to local viewers",
	Long: `Listen on a local port for VNC viewers (remote-viewer, vncviewer, vncsnapshot…).

Through a proxy (--proxy), every viewer connection becomes its own websocket
session carrying the token; the proxy negotiates VeNCrypt x509 TLS (and the
VNC password) with QEMU, and the viewer speaks plain VNC with no password to
the local port.

With DOMAIN (a libvirt name, UUID or ID; -c picks the libvirt URI), the token
is read from libvirt when a proxy is given (the console must be enabled: see
"virtconsole enable"), afresh for every connection since tokens may be
single-use; without a proxy, the VNC address and password are read from the
domain and virtconsole connects directly.

In direct mode (--target or DOMAIN, no proxy) virtconsole negotiates with QEMU
itself: VeNCrypt x509 with the credentials in --connect-tls-dir (ca-cert.pem,
and client-cert.pem/client-key.pem when QEMU verifies clients) and the
password from --password-file (or the domain). Cleartext VNC needs
--connect-insecure.

The listener is on 127.0.0.1 unless --listen-address and --allow-remote say
otherwise: it hands out the console without asking for anything. It keeps
accepting viewers until Ctrl+C (or --once, or the viewer it started exits).
When QEMU or the proxy refuses, the viewer is told why in the VNC handshake.`,
	Example: `  # through a proxy, then point a viewer at the printed address
  virtconsole vnc --proxy wss://proxy.example:6443 --token-file ./vnctoken --local-port 5999
  vncviewer 127.0.0.1::5999

  # pick a free port and start a viewer; exit when it closes
  virtconsole vnc --proxy wss://proxy.example:6443 --token-file ./vnctoken --viewer auto

  # a libvirt domain through a proxy, the token read from libvirt
  virtconsole vnc myvm -c qemu:///system --proxy wss://proxy.example:6443 --viewer auto

  # direct to QEMU's VeNCrypt port with client certificates and a VNC password
  virtconsole vnc --target 10.0.0.5:5901 --connect-tls-dir /etc/pki/qemu --password-file ./vncpass --local-port 0 --json

  # one viewer, kept through proxy restarts: reconnect it to the same port
  virtconsole vnc myvm --proxy wss://proxy.example:6443 --local-port 5999 --once --reconnect`,
	Refuse: func(ctx context.Context, viewer net.Conn, err error) {
		// Tell the viewer why, in RFB, instead of dropping it.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		vnc.Refuse(rctx, viewer, cmdutil.OneLine(err))
	},
}

// NewCmdVNC returns "virtconsole vnc".
func NewCmdVNC(f *cmdutil.Factory, runF func(context.Context, *graphics.Options) error) *cobra.Command {
	return graphics.NewCmd(f, Spec, runF)
}
