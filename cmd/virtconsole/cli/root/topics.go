package root

import (
	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// newCmdExitCodes returns the help topic "virtconsole help exit-codes": a
// command without Run, which cobra lists under "Additional help topics".
func newCmdExitCodes() *cobra.Command {
	return &cobra.Command{
		Use:   "exit-codes",
		Short: "What virtconsole's exit codes mean",
		Long:  cmdutil.ExitCodesHelp,
	}
}
