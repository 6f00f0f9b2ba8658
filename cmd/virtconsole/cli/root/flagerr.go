package root

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// flagError is the root's flag error function: the error stays one line,
// names flags close to an unknown one, and points to the command's help.
func flagError(c *cobra.Command, err error) error {
	hint := ""
	if name, ok := strings.CutPrefix(err.Error(), "unknown flag: --"); ok {
		if s := similarFlags(c, name); len(s) > 0 {
			hint = " (did you mean --" + strings.Join(s, " or --") + "?)"
		}
	}
	return &cmdutil.FlagError{Err: fmt.Errorf("%w%s; see '%s --help'", err, hint, c.CommandPath())}
}

// similarFlags returns the names of c's visible flags that name is a
// prefix of or within an edit or two of (one for short names), at most
// three.
func similarFlags(c *cobra.Command, name string) []string {
	var out []string
	maxEdits := min(2, max(1, len(name)/3))
	seen := map[string]bool{}
	visit := func(f *pflag.Flag) {
		if f.Hidden || seen[f.Name] || len(out) == 3 {
			return
		}
		seen[f.Name] = true
		if (len(name) >= 2 && strings.HasPrefix(f.Name, name)) || editDistance(name, f.Name) <= maxEdits {
			out = append(out, f.Name)
		}
	}
	c.Flags().VisitAll(visit)
	c.InheritedFlags().VisitAll(visit)
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
