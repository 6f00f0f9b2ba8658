// Package server implements "virtconsole server": the websocket console
// proxy and the token resolver daemons.
package server

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// NewCmdServer returns "virtconsole server" (the proxy and the libvirt
// resolver in one process) and its subcommands.
func NewCmdServer(f *cmdutil.Factory, runF func(context.Context, *ProxyOptions) error) *cobra.Command {
	opts := &ProxyOptions{}
	dopts := &daemonOptions{table: "server"}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the console proxy with the libvirt resolver, or one of them alone",
		Long: `Run virtconsole's daemons.

"virtconsole server --connect URI…" runs the websocket console proxy and the
libvirt resolver in one process: tokens are the values of the secrets named
in the domains' console-proxy metadata (see "virtconsole enable"), followed
live, and pty serial consoles are served through libvirt's console stream
(only this bundled mode can: the proxy alone has no libvirt access).
Tokens are single-use (--single-use, on by default here): when a session
starts, its secret gets a new value, so the used token is dead for every
proxy reading the same libvirtd (the client commands read a fresh one per
session); --single-use=false makes them reusable. A SPICE session's further
channels join it with the same token while it lives. Without
--connect-tls-dir it still starts, serves the consoles that need no TLS
toward QEMU (pty consoles through libvirt) and refuses the others (VNC,
SPICE, TLS chardevs) with that reason.

"server proxy" is the proxy alone, resolving with a static token file or a
REST resolver; "server resolver" answers token lookups over the REST API of
the original libvirt-console-proxy, from libvirt or a token file.

The proxy's flags, statuses and logging are described in "server proxy
--help". --web (on here) serves the browser console pages; "virtconsole open
DOMAIN" prints a link to one.

Under systemd (cmd/virtconsole/virtconsole.service in the source tree), it
takes its listening socket from socket activation (virtconsole.socket) when
one is handed over, instead of --listen, and reports to the service manager
(Type=notify: ready, stopping, watchdog).
` + configHelp("server"),
		Example: `  virtconsole server --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --connect qemu:///system
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole \
      --connect-tls-dir /etc/pki/qemu --tokens /etc/virtconsole/tokens.json
  virtconsole server resolver --listen :8081 --tls-dir /etc/pki/virtconsole --require-client-cert --connect qemu:///system

  # one of several replicas behind HAProxy (cmd/virtconsole/haproxy.cfg): the client's
  # address from the balancer's PROXY header; on SIGTERM, out of rotation before draining
  virtconsole server --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --connect qemu+tls://hv1/system --connect qemu+tls://hv2/system \
      --trusted-proxies 10.0.0.5 --drain-grace 5s --drain-timeout 10m

  # settings from a config file's [server] table; see what is in force
  virtconsole server --config /etc/virtconsole/server.toml --print-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := dopts.load(cmd, f)
			if err != nil {
				return err
			}
			if len(opts.Connect) == 0 {
				opts.Connect = []string{f.LibvirtURI("")}
			}
			if dopts.PrintConfig {
				return dopts.print(cmd, f.IOStreams.Out, src)
			}
			opts.configReload = dopts.configReload(cmd, f, src)
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runProxy(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	addDaemonFlags(cmd, dopts, &f.Log)
	addProxyFlags(fl, opts)
	addConnectFlag(fl, &opts.Connect, "default $LIBVIRT_DEFAULT_URI or qemu:///system")
	addSingleUseFlag(fl, &opts.SingleUse, true, "its secret gets a new value when a session starts; --single-use=false makes tokens reusable")
	addReusableTokensAlias(fl, &opts.SingleUse)
	addWebFlag(fl, &opts.Web, true)
	cmd.AddCommand(NewCmdProxy(f, nil))
	cmd.AddCommand(NewCmdResolver(f, nil))
	return cmd
}
