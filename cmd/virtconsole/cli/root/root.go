// Package root assembles virtconsole's command tree.
package root

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/admin"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/certs"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/config"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/input"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/open"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/recordings"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/screenshot"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/serial"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/server"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/sessions"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/share"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/spice"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/token"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/version"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/vnc"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/vv"
)

// NewCmdRoot returns the root command with every subcommand attached.
func NewCmdRoot(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "virtconsole <command>",
		Short: "Consoles of libvirt/QEMU virtual machines: client, local tunnel and websocket proxy",
		Long: `virtconsole reaches the consoles of libvirt/QEMU virtual machines - serial
lines, VNC and SPICE graphics - securely: through a websocket proxy that
understands the console protocols and talks TLS to QEMU, or straight to QEMU.

` + cmdutil.ExitCodesLine,
		Example: `  # an interactive serial console through a proxy
  virtconsole serial --proxy wss://proxy.example:6443 --token-file ./token

  # run the websocket proxy with a static token file
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu --tokens tokens.json`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(f.IOStreams.Out)
	cmd.SetErr(f.IOStreams.ErrOut)
	cmd.SetIn(f.IOStreams.In)
	cmd.SetFlagErrorFunc(flagError)
	cmd.SetUsageTemplate(usageTemplate)
	// --version prints the line "virtconsole version" prints. The flag is
	// declared here rather than left to cobra so that it has no -v
	// shorthand and appears in the man page.
	info := version.Get()
	cmd.Version = info.Version
	cmd.Flags().Bool("version", false, `print the version (as "virtconsole version" does)`)
	cmd.SetVersionTemplate(`{{printf "%s\n" ` + strconv.Quote(info.Line()) + `}}`)

	serialCmd, vncCmd := serial.NewCmdSerial(f, nil), vnc.NewCmdVNC(f, nil)
	cmd.AddCommand(serialCmd)
	cmd.AddCommand(vncCmd)
	cmd.AddCommand(spice.NewCmdSPICE(f, nil))
	cmd.AddCommand(screenshot.NewCmdScreenshot(f, nil))
	cmd.AddCommand(input.NewCmdKeys(f, nil))
	cmd.AddCommand(input.NewCmdType(f, nil))
	cmd.AddCommand(open.NewCmdOpen(f, nil))
	cmd.AddCommand(vv.NewCmdVV(f, nil))
	cmd.AddCommand(server.NewCmdServer(f, nil))
	cmd.AddCommand(admin.NewCmdEnable(f, nil))
	cmd.AddCommand(admin.NewCmdDisable(f, nil))
	cmd.AddCommand(admin.NewCmdRotate(f, nil))
	cmd.AddCommand(admin.NewCmdConsoles(f, nil))
	cmd.AddCommand(sessions.NewCmdSessions(f, nil))
	cmd.AddCommand(recordings.NewCmdRecordings(f, nil))
	cmd.AddCommand(share.NewCmdShare(f, nil))
	cmd.AddCommand(token.NewCmdToken(f))
	cmd.AddCommand(certs.NewCmdCerts(f))
	cmd.AddCommand(config.NewCmdConfig(f, serialCmd.Flags(), vncCmd.Flags()))
	cmd.AddCommand(version.NewCmdVersion(f, nil))
	cmd.AddCommand(newCmdExitCodes())
	cmdutil.Walk(cmd, func(c *cobra.Command) {
		// pflag prints a deprecated flag's notice there; cobra would print
		// it on Out, where the console's output or --json goes.
		c.Flags().SetOutput(f.IOStreams.ErrOut)
	})
	return cmd
}
