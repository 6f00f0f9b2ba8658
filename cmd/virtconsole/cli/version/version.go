// Package version implements "virtconsole version".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// Version is set at build time with -ldflags "-X ...version.Version=v1.2.3".
var Version = ""

// String returns the version of this build.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// NewCmdVersion returns "virtconsole version".
func NewCmdVersion(f *cmdutil.Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the virtconsole version",
		Args:    cobra.NoArgs,
		Example: "  virtconsole version",
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := fmt.Fprintf(f.IOStreams.Out, "virtconsole %s %s %s/%s\n", String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
