package cmdutil

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

// Execute runs cmd on args. An error that cobra itself returns rather
// than a command's run function (an unknown command, a wrong number of
// arguments, a required flag missing) is a usage error (*FlagError):
// cobra's errors have no type of their own, but they all come before the
// run function.
func Execute(ctx context.Context, cmd *cobra.Command, args []string) error {
	ran := false
	Walk(cmd, func(c *cobra.Command) {
		if run := c.RunE; run != nil {
			c.RunE = func(c *cobra.Command, args []string) error {
				ran = true
				return run(c, args)
			}
		}
	})
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if _, ok := errors.AsType[*FlagError](err); err != nil && !ran && !ok {
		err = &FlagError{Err: err}
	}
	return err
}

// Walk calls fn on cmd and every command below it.
func Walk(cmd *cobra.Command, fn func(*cobra.Command)) {
	fn(cmd)
	for _, c := range cmd.Commands() {
		Walk(c, fn)
	}
}
