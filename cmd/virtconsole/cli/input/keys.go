package input

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/keymap"
)

// KeysOptions are the flags of "virtconsole keys".
type KeysOptions struct {
	Options
	Hold   time.Duration
	Combos [][]keymap.Key
}

// NewCmdKeys returns "virtconsole keys". runF replaces the run function
// in tests; nil runs the command.
func NewCmdKeys(f *cmdutil.Factory, runF func(context.Context, *KeysOptions) error) *cobra.Command {
	opts := &KeysOptions{Options: Options{IO: f.IOStreams}}
	cmd := &cobra.Command{
		Use:   "keys [DOMAIN] COMBO...",
		Short: "Press keys on a VM's graphical console",
		Long: `Press key combinations on a virtual machine's graphical console (VNC or
SPICE), one after the other: for each, its keys go down in the order given
and up in reverse, held down for --hold.

A combination is key names joined by '-': ctrl-alt-del, alt-f2, ctrl-c,
shift-a, enter. Names: ctrl, shift, alt, altgr, super (and rctrl, rshift,
ralt, rsuper), enter, esc, backspace, tab, space, capslock, numlock,
scrolllock, print, sysrq, pause, insert, delete (del), home, end, pageup,
pagedown, up, down, left, right, menu, f1 to f12, a to z, 0 to 9, and the
unshifted punctuation keys by character or by name (minus, equal,
bracketleft, bracketright, semicolon, apostrophe, grave, backslash, comma,
period, slash): "ctrl-minus", since '-' joins. Keys are those of a US
keyboard. An unknown name is an error before anything is pressed.

The first argument is DOMAIN unless --target, --token-file or
VIRTCONSOLE_TOKEN say there is none.

` + routeHelp + `

` + cmdutil.ExitCodesLine,
		Example: `  # on a hypervisor: reboot myvm's guest the way a user at its console would
  virtconsole keys myvm ctrl-alt-del

  # through a proxy with a token file: switch to the second virtual terminal
  virtconsole keys --proxy wss://proxy.example:6443 --ca-file ./ca-cert.pem --token-file ./vnctoken ctrl-alt-f2

  # through a proxy, the token read from libvirt: answer a boot menu
  virtconsole keys myvm -c qemu+ssh://hv1.example/system --proxy wss://proxy.example:6443 down down enter

  # direct to QEMU's VeNCrypt port with client certificates; hold a key for 2 s
  virtconsole keys --target 10.0.0.5:5901 --connect-tls-dir /etc/pki/qemu --hold 2s shift

  # a SPICE console through a proxy
  virtconsole keys --protocol spice --proxy wss://proxy.example:6443 --token-file ./spicetoken ctrl-c`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			domain, combos := splitDomain(f, &opts.Options, args)
			if len(combos) == 0 {
				return &cmdutil.FlagError{Err: errors.New("give at least one key combination after DOMAIN, e.g. ctrl-alt-del")}
			}
			if err := opts.check(); err != nil {
				return err
			}
			if opts.Hold < 0 {
				return &cmdutil.FlagError{Err: fmt.Errorf("--hold %v: want a duration of 0 or more", opts.Hold)}
			}
			opts.Combos = nil
			for _, c := range combos {
				keys, err := keymap.ParseCombo(c)
				if err != nil {
					return &cmdutil.FlagError{Err: fmt.Errorf("%v; see 'virtconsole keys --help' for key names", err)}
				}
				opts.Combos = append(opts.Combos, keys)
			}
			if err := opts.Route.Check(f, cmd, domain); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return run(cmd.Context(), f, &opts.Options, func(press func(keymap.Key, bool) error) error {
				for _, keys := range opts.Combos {
					if err := keymap.Press(keys, opts.Hold, opts.KeyDelay, press); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	addFlags(cmd, &opts.Options)
	cmd.Flags().DurationVar(&opts.Hold, "hold", 0, "keep each combination down for `DURATION` before releasing it")
	return cmd
}
