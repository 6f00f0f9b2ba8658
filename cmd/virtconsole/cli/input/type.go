package input

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/keymap"
)

// maxText bounds the text typed (at about 20 ms a key, 64 KiB is over 20
// minutes of typing).
const maxText = 64 << 10

// TypeOptions are the flags of "virtconsole type".
type TypeOptions struct {
	Options
	Text string
}

// NewCmdType returns "virtconsole type". runF replaces the run function
// in tests; nil runs the command.
func NewCmdType(f *cmdutil.Factory, runF func(context.Context, *TypeOptions) error) *cobra.Command {
	opts := &TypeOptions{Options: Options{IO: f.IOStreams}}
	cmd := &cobra.Command{
		Use:   "type [DOMAIN]",
		Short: "Type text into a VM's graphical console",
		Long: `Type text into a virtual machine's graphical console (VNC or SPICE) as a
user at a US keyboard would: the text of --text, or else standard input up
to its end.

The text is typed exactly as given: no escapes are interpreted, so "\n" in
--text is a backslash and an n. A newline is Enter and a tab is Tab (a
carriage return before a newline is dropped); every other character must be
printable ASCII, which is typed with Shift where a US keyboard needs it. A
character no key types is an error before anything is typed. In a shell,
$'...' or a here-document gives newlines.

` + routeHelp + `

` + cmdutil.ExitCodesLine,
		Example: `  # on a hypervisor: log in at myvm's console
  printf 'root\n' | virtconsole type myvm

  # through a proxy with a token file; $'...' makes \n a newline (Enter)
  virtconsole type --proxy wss://proxy.example:6443 --ca-file ./ca-cert.pem --token-file ./vnctoken --text $'uname -a\n'

  # through a proxy, the token read from libvirt
  virtconsole type myvm -c qemu+ssh://hv1.example/system --proxy wss://proxy.example:6443 --text $'reboot\n'

  # direct to QEMU's VeNCrypt port with client certificates, a script from a file
  virtconsole type --target 10.0.0.5:5901 --connect-tls-dir /etc/pki/qemu < commands.txt

  # a SPICE console through a proxy, slower for a busy guest
  virtconsole type --protocol spice --proxy wss://proxy.example:6443 --token-file ./spicetoken --key-delay 30ms --text $'ls\n'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := opts.check(); err != nil {
				return err
			}
			text := opts.Text
			if !cmd.Flags().Changed("text") {
				if opts.Route.Proxy.TokenFile == "-" {
					return &cmdutil.FlagError{Err: errors.New("--token-file - reads the token from standard input; give the text with --text")}
				}
				if opts.IO.IsStdinTTY() {
					fmt.Fprintln(opts.IO.ErrOut, "Reading the text to type from the terminal; end it with Ctrl+D.")
				}
				b, err := io.ReadAll(io.LimitReader(opts.IO.In, maxText+1))
				if err != nil {
					return &cmdutil.FlagError{Err: fmt.Errorf("reading the text from standard input: %v", err)}
				}
				text = string(b)
			}
			if len(text) > maxText {
				return &cmdutil.FlagError{Err: fmt.Errorf("the text is over %d KiB; type it in parts", maxText>>10)}
			}
			text = strings.ReplaceAll(text, "\r\n", "\n")
			for i, r := range text {
				if _, _, ok := keymap.ForRune(r); !ok {
					return &cmdutil.FlagError{Err: fmt.Errorf("character %q at byte %d: no key of a US keyboard types it (printable ASCII, newline and tab only)", r, i)}
				}
			}
			opts.Text = text
			if err := opts.Route.Check(f, cmd, args); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			if text == "" {
				return nil
			}
			return run(cmd.Context(), f, &opts.Options, func(press func(keymap.Key, bool) error) error {
				return keymap.Type(text, opts.KeyDelay, press)
			})
		},
	}
	addFlags(cmd, &opts.Options)
	cmd.Flags().StringVar(&opts.Text, "text", "", "type `TEXT` (as is: no escapes) instead of standard input")
	return cmd
}
