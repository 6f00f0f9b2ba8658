// Command gendocs writes virtconsole's man pages (man/) and shell
// completion scripts (completions/) from the cobra command tree. It runs
// from "go generate ./..."; a test fails when the committed files are
// stale.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/virtconsole/virtconsole/cmd/gendocs/gen"
)

func main() {
	out := flag.String("out", ".", "repository root to write man/ and completions/ under")
	flag.Parse()
	if err := gen.Write(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}
