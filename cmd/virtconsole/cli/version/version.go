// Package version implements "virtconsole version" and the version line
// that the root command's --version prints.
package version

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// Version is set at build time with -ldflags "-X ...version.Version=v1.2.3"
// and then wins over everything the build info says.
var Version = ""

// Info describes this build; "virtconsole version --json" prints it.
type Info struct {
	// Version is what String returns.
	Version string `json:"version"`
	// Go, OS and Arch are the toolchain and platform of the build.
	Go   string `json:"go"`
	OS   string `json:"os"`
	Arch string `json:"arch"`
	// Revision, Time and Modified come from the version control stamp Go
	// embeds when it builds from a checkout (empty or false without one).
	Revision string `json:"revision"`
	Time     string `json:"time"`
	Modified bool   `json:"modified"`
}

// Get returns this build's Info.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return infoFrom(Version, bi)
}

// String returns the version of this build: the -ldflags version if set;
// else the module version (a release tag with "go install ...@v1.2.3", a
// pseudo-version with the commit when Go stamps a build from a checkout);
// else, for a "(devel)" build with a version control stamp,
// "devel+REVISION (TIME[, modified])"; else "devel".
func String() string { return Get().Version }

// Line is the line "virtconsole version" and "virtconsole --version"
// print, without the newline.
func (i Info) Line() string {
	return fmt.Sprintf("virtconsole %s %s %s/%s", i.Version, i.Go, i.OS, i.Arch)
}

// infoFrom builds the Info from an -ldflags version and the build info
// (nil when the binary has none).
func infoFrom(ldflags string, bi *debug.BuildInfo) Info {
	i := Info{Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	module := ""
	if bi != nil {
		module = bi.Main.Version
		if bi.GoVersion != "" {
			i.Go = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.time":
				i.Time = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			case "GOOS":
				i.OS = s.Value
			case "GOARCH":
				i.Arch = s.Value
			}
		}
	}
	switch {
	case ldflags != "":
		i.Version = ldflags
	case module != "" && module != "(devel)":
		i.Version = module
	case i.Revision != "":
		i.Version = "devel+" + short(i.Revision)
		var details []string
		if i.Time != "" {
			details = append(details, i.Time)
		}
		if i.Modified {
			details = append(details, "modified")
		}
		if len(details) > 0 {
			i.Version += " (" + strings.Join(details, ", ") + ")"
		}
	default:
		i.Version = "devel"
	}
	return i
}

// short abbreviates a revision to 12 characters, as pseudo-versions do.
func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// Options are "virtconsole version"'s flags.
type Options struct {
	IO   *cmdutil.IOStreams
	JSON bool
}

// NewCmdVersion returns "virtconsole version". runF replaces runVersion
// in tests when not nil.
func NewCmdVersion(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IOStreams}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the virtconsole version",
		Long: `Print the version of this virtconsole binary, the Go toolchain that built it
and its platform. A release build shows its tag; a build from a git checkout
shows the commit, its time and whether the tree had uncommitted changes;
"devel" means the build carries no version at all (-buildvcs=false).
"virtconsole --version" prints the same line.

With --json: an object with the keys version, go, os, arch, revision, time
(the commit's, RFC 3339) and modified (true or false).`,
		Args: cobra.NoArgs,
		Example: `  virtconsole version
  virtconsole --version
  virtconsole version --json | jq -r .revision`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runVersion(opts)
		},
	}
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print the version and build details as JSON")
	return cmd
}

func runVersion(opts *Options) error {
	i := Get()
	if opts.JSON {
		enc := json.NewEncoder(opts.IO.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(i)
	}
	_, err := fmt.Fprintln(opts.IO.Out, i.Line())
	return err
}
