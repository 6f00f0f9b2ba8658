// Package token implements "virtconsole token": making console tokens for
// the static token file and the client commands' --token-file.
package token

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
)

// Bytes is how many random bytes a new token holds: 256 bits, as the
// tokens "virtconsole enable" stores in libvirt secrets.
const Bytes = resolver.TokenBytes

// NewCmdToken returns "virtconsole token" with its subcommands.
func NewCmdToken(f *cmdutil.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token <command>",
		Short: "Make console tokens",
		Long: `Make console tokens: the secrets that a proxy's static token file (--tokens)
maps to consoles and that clients present with --token-file.

Tokens for libvirt domains need none of this: "virtconsole enable" makes
them and stores them in libvirt secrets.`,
		Example: `  virtconsole token new
  (umask 077; virtconsole token new > mytoken)`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(NewCmdTokenNew(f, nil))
	return cmd
}

// NewOptions are the inputs of "virtconsole token new".
type NewOptions struct {
	IO   *cmdutil.IOStreams
	JSON bool
	// Rand is the source of the token's bytes; nil means crypto/rand.
	Rand io.Reader
}

// NewCmdTokenNew returns "virtconsole token new". runF replaces runNew in
// tests when not nil.
func NewCmdTokenNew(f *cmdutil.Factory, runF func(*NewOptions) error) *cobra.Command {
	opts := &NewOptions{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Print a new random token",
		Long: `Print a new random token on one line: 32 bytes from the operating system's
cryptographic random source in unpadded base64url (43 characters of A-Z,
a-z, 0-9, - and _), the same kind of token "virtconsole enable" stores in
libvirt secrets. It has no "/", "+" or "=", so it goes into URLs, JSON and
shell commands as it is.

Keep token files private: write them with mode 0600 (a umask of 077 in a
subshell does it); the client and the proxy warn about token files that
others can read.`,
		Example: `  # a token file for "virtconsole serial --token-file ./mytoken"
  (umask 077; virtconsole token new > mytoken)

  # a static token file for "virtconsole server proxy --tokens tokens.json"
  (umask 077; printf '{"%s": {"type": "serial", "address": "127.0.0.1:4555", "insecure": false}}\n' \
    "$(cat mytoken)" > tokens.json)

  virtconsole token new --json | jq -r .token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runNew(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, `print {"token": TOKEN} as JSON`)
	return cmd
}

func runNew(opts *NewOptions) error {
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	tok, err := resolver.NewTokenFrom(r)
	if err != nil {
		return err
	}
	if opts.JSON {
		return json.NewEncoder(opts.IO.Out).Encode(struct {
			Token string `json:"token"`
		}{tok})
	}
	_, err = fmt.Fprintln(opts.IO.Out, tok)
	return err
}
