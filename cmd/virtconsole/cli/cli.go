// Package cli is virtconsole's command tree. Main runs it and is the one
// place where errors become messages and exit codes.
package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/root"
)

// Main runs virtconsole with args on the given streams and returns the
// process exit code. The error, if any, is printed once, on one line.
func Main(ctx context.Context, io *cmdutil.IOStreams, args []string) int {
	f := cmdutil.NewFactory(io)
	cmd := root.NewCmdRoot(f)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return cmdutil.ExitOK
	}
	code := cmdutil.ExitCode(err)
	var silent *cmdutil.SilentError
	if !errors.As(err, &silent) {
		fmt.Fprintf(io.ErrOut, "virtconsole: %s\n", cmdutil.OneLine(err))
	}
	return code
}
