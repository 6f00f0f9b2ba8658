// Package admin implements the commands that administer console access on
// a libvirt domain: enable, disable, rotate and consoles.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
)

// commonHelp is appended to every admin command's help.
const commonHelp = `DOMAIN is a name, UUID or ID. -c/--connect names the libvirt URI (default:
$LIBVIRT_DEFAULT_URI, else qemu:///system).

Each console gets a libvirt secret whose value is the console's token, and an
entry in the domain's console-proxy metadata (namespace
http://libvirt.org/schemas/console-proxy/1.0), the format of the original
libvirt-console-proxy: resolvers (virtconsole server, server resolver) read
both and follow changes at once.

`

// withLibvirt connects to uri, runs op and closes the connection.
func withLibvirt(ctx context.Context, f *cmdutil.Factory, uri string, op func(*libvirtadmin.Conn) error) error {
	c, err := f.Libvirt(ctx, uri)
	if err != nil {
		return err
	}
	defer c.Close()
	return op(c)
}

// domainArg is the Args of a command taking one DOMAIN: what is missing
// is said in words rather than cobra's "accepts 1 arg(s)". what ends the
// sentence "give the DOMAIN (name, UUID or ID) whose …".
func domainArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return &cmdutil.FlagError{Err: fmt.Errorf("%s: give the DOMAIN (name, UUID or ID) whose %s", cmd.Name(), what)}
		case len(args) > 1:
			return &cmdutil.FlagError{Err: fmt.Errorf("%s: one DOMAIN at a time, got %d: %s", cmd.Name(), len(args), strings.Join(args, " "))}
		}
		return nil
	}
}

// EnableOptions are the flags of "virtconsole enable".
type EnableOptions struct {
	URI    string
	Domain string
	Types  []string
	Host   string
	// Cleartext marks the consoles insecure: the proxy may reach them
	// without TLS (with --connect-insecure).
	Cleartext bool
	JSON      bool
}

// NewCmdEnable returns "virtconsole enable".
func NewCmdEnable(f *cmdutil.Factory, runF func(context.Context, *EnableOptions) error) *cobra.Command {
	opts := &EnableOptions{}
	cmd := &cobra.Command{
		Use:   "enable DOMAIN",
		Short: "Enable console access through the proxy for a domain",
		Long: `Give a domain's consoles tokens, so that a virtconsole proxy serves them.

One secret per console device (ephemeral='no', private='no', value = 32
random bytes) and the metadata are written to the running domain and to its
persistent config. Consoles already enabled keep their token, so running it
twice is harmless; if a step fails, the secrets it created are removed.

` + commonHelp + cmdutil.ExitCodesLine,
		Example: `  virtconsole enable myvm
  virtconsole enable myvm --type vnc,serial --host console-net.example
  virtconsole -c qemu+tls://hv1.example/system enable 3f1c… --type spice`,
		Args: domainArg("consoles to enable"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Domain = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runEnable(cmd.Context(), f, opts)
		},
	}
	cmdutil.AddLibvirtURIFlag(cmd, &opts.URI)
	cmd.Flags().StringSliceVar(&opts.Types, "type", []string{"vnc", "spice", "serial", "console"}, "console `TYPES` to enable (comma-separated: vnc, spice, serial, console)")
	cmd.Flags().StringVar(&opts.Host, "host", "", "the proxy dials `NAME_OR_IP` instead of the domain's listen address")
	cmd.Flags().BoolVar(&opts.Cleartext, "cleartext", false, "mark the consoles insecure: a proxy started with --connect-insecure talks cleartext to QEMU")
	// Former name: --insecure means "allow a ws:// URL" on the clients.
	cmdutil.DeprecatedAlias(cmd.Flags(), "insecure", "cleartext")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the consoles as JSON")
	return cmd
}

func runEnable(ctx context.Context, f *cmdutil.Factory, opts *EnableOptions) error {
	var kinds []protocols.Kind
	for _, t := range opts.Types {
		k, err := protocols.ParseKind(strings.TrimSpace(t))
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("--type: %w", err)}
		}
		kinds = append(kinds, k)
	}
	return withLibvirt(ctx, f, opts.URI, func(c *libvirtadmin.Conn) error {
		consoles, err := c.Enable(ctx, opts.Domain, kinds, opts.Host, opts.Cleartext)
		if err != nil {
			return err
		}
		return printConsoles(f.IOStreams.Out, consoles, opts.JSON)
	})
}

// DisableOptions are the flags of "virtconsole disable".
type DisableOptions struct {
	URI    string
	Domain string
}

// NewCmdDisable returns "virtconsole disable".
func NewCmdDisable(f *cmdutil.Factory, runF func(context.Context, *DisableOptions) error) *cobra.Command {
	opts := &DisableOptions{}
	cmd := &cobra.Command{
		Use:   "disable DOMAIN",
		Short: "Disable console access through the proxy for a domain",
		Long: `Remove a domain's console-proxy metadata and the secrets holding its tokens:
its tokens stop resolving at once. Disabling a domain that is not enabled is
harmless.

` + commonHelp + cmdutil.ExitCodesLine,
		Example: `  virtconsole disable myvm`,
		Args:    domainArg("consoles to disable"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Domain = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runDisable(cmd.Context(), f, opts)
		},
	}
	cmdutil.AddLibvirtURIFlag(cmd, &opts.URI)
	return cmd
}

func runDisable(ctx context.Context, f *cmdutil.Factory, opts *DisableOptions) error {
	return withLibvirt(ctx, f, opts.URI, func(c *libvirtadmin.Conn) error {
		if err := c.Disable(ctx, opts.Domain); err != nil {
			return err
		}
		_, err := fmt.Fprintf(f.IOStreams.Out, "console access disabled for %s\n", opts.Domain)
		return err
	})
}

// RotateOptions are the flags of "virtconsole rotate".
type RotateOptions struct {
	URI    string
	Domain string
	JSON   bool
}

// NewCmdRotate returns "virtconsole rotate".
func NewCmdRotate(f *cmdutil.Factory, runF func(context.Context, *RotateOptions) error) *cobra.Command {
	opts := &RotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate DOMAIN",
		Short: "Give a domain's enabled consoles new tokens",
		Long: `Set new random values on the secrets of a domain's enabled consoles: the old
tokens stop resolving at once, sessions already open go on.

` + commonHelp + cmdutil.ExitCodesLine,
		Example: `  virtconsole rotate myvm`,
		Args:    domainArg("tokens to rotate"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Domain = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runRotate(cmd.Context(), f, opts)
		},
	}
	cmdutil.AddLibvirtURIFlag(cmd, &opts.URI)
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the consoles as JSON")
	return cmd
}

func runRotate(ctx context.Context, f *cmdutil.Factory, opts *RotateOptions) error {
	return withLibvirt(ctx, f, opts.URI, func(c *libvirtadmin.Conn) error {
		consoles, err := c.Rotate(ctx, opts.Domain)
		if err != nil {
			return err
		}
		return printConsoles(f.IOStreams.Out, consoles, opts.JSON)
	})
}

// ConsolesOptions are the flags of "virtconsole consoles".
type ConsolesOptions struct {
	URI        string
	Domain     string
	JSON       bool
	ShowTokens bool
}

// NewCmdConsoles returns "virtconsole consoles".
func NewCmdConsoles(f *cmdutil.Factory, runF func(context.Context, *ConsolesOptions) error) *cobra.Command {
	opts := &ConsolesOptions{}
	cmd := &cobra.Command{
		Use:   "consoles DOMAIN",
		Short: "List a domain's consoles and whether they are enabled",
		Long: `List a domain's console devices (VNC and SPICE graphics, serials, consoles):
type, index, backend, where the proxy reaches it, and whether it has a token.
Token values are shown only with --show-tokens.

` + commonHelp + cmdutil.ExitCodesLine,
		Example: `  virtconsole consoles myvm
  virtconsole consoles myvm --json --show-tokens | jq -r '.[] | select(.type=="vnc") | .token'`,
		Args: domainArg("consoles to list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Domain = args[0]
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runConsoles(cmd.Context(), f, opts)
		},
	}
	cmdutil.AddLibvirtURIFlag(cmd, &opts.URI)
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the consoles as JSON")
	cmd.Flags().BoolVar(&opts.ShowTokens, "show-tokens", false, "include token values (secrets: mind your terminal and logs)")
	return cmd
}

func runConsoles(ctx context.Context, f *cmdutil.Factory, opts *ConsolesOptions) error {
	return withLibvirt(ctx, f, opts.URI, func(c *libvirtadmin.Conn) error {
		consoles, err := c.Consoles(ctx, opts.Domain, opts.ShowTokens)
		if err != nil {
			return err
		}
		return printConsoles(f.IOStreams.Out, consoles, opts.JSON)
	})
}

func printConsoles(out io.Writer, consoles []libvirtadmin.Console, asJSON bool) error {
	if asJSON {
		if consoles == nil {
			consoles = []libvirtadmin.Console{}
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(consoles)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	showTokens := false
	for _, c := range consoles {
		showTokens = showTokens || c.Token != ""
	}
	header := "TYPE\tINDEX\tBACKEND\tTARGET\tENABLED"
	if showTokens {
		header += "\tTOKEN"
	}
	fmt.Fprintln(tw, header)
	for _, c := range consoles {
		target := c.Address
		if target == "" {
			target = "-"
			if c.Problem != "" {
				target = "- (" + c.Problem + ")"
			}
		}
		enabled := "no"
		if c.Enabled {
			enabled = "yes"
			if c.Insecure {
				enabled = "yes (insecure)"
			}
		}
		line := fmt.Sprintf("%s\t%d\t%s\t%s\t%s", c.Kind, c.Index, c.Backend, target, enabled)
		if showTokens {
			line += "\t" + c.Token
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}
