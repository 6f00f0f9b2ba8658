// Package cli is virtconsole's command tree. Main runs it and is the one
// place where errors become messages (printed once, on one line) and exit
// codes (cmdutil.ExitCode's table).
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
	err := cmdutil.Execute(ctx, root.NewCmdRoot(cmdutil.NewFactory(io)), args)
	if err == nil {
		return cmdutil.ExitOK
	}
	if _, reported := errors.AsType[*cmdutil.SilentError](err); !reported {
		fmt.Fprintf(io.ErrOut, "virtconsole: %s\n", cmdutil.OneLine(err))
	}
	return cmdutil.ExitCode(err)
}
