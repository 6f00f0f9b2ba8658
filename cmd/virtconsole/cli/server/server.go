// Package server implements "virtconsole server": the websocket console
// proxy and the token resolver daemons.
package server

import (
	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// NewCmdServer returns "virtconsole server" and its subcommands.
func NewCmdServer(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server <command>",
		Short: "Run the websocket console proxy or the token resolver",
		Long: `Run virtconsole's daemons.

"server proxy" accepts websockets from viewers (virtconsole, noVNC,
spice-html5), resolves their token to a console, and connects to QEMU with
TLS. "server resolver" answers token lookups over the REST API of the
original libvirt-console-proxy, for proxies that resolve remotely.`,
		Example: `  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole \
      --connect-tls-dir /etc/pki/qemu --tokens /etc/virtconsole/tokens.json
  virtconsole server resolver --listen :8081 --tls-dir /etc/pki/virtconsole --tokens tokens.json`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(NewCmdProxy(f, nil))
	cmd.AddCommand(NewCmdResolver(f, nil))
	return cmd
}
