package main

// Every virtconsole command line the README shows, in any ```sh block,
// parses against the real command tree: the command exists, its flags
// exist and take the values given, and it gets a number of arguments it
// accepts. The walkthroughs run (readme_test.go); this catches a renamed
// flag or command in the reference sections, whose hosts are examples.

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/root"
)

func TestREADMECommandLines(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, line := range shLines(t, "README", string(b)) {
		for _, cmdline := range readmeCommands(line) {
			n++
			cmd := root.NewCmdRoot(cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &strings.Builder{}, &strings.Builder{})))
			sub, rest, err := cmd.Find(cmdline[1:])
			if err != nil || (sub == cmd && !strings.HasPrefix(cmdline[1], "-")) {
				t.Errorf("README: %q: no such command (%v)", strings.Join(cmdline, " "), err)
				continue
			}
			if err := sub.ParseFlags(rest); err != nil {
				t.Errorf("README: %q: %v", strings.Join(cmdline, " "), err)
				continue
			}
			if err := sub.ValidateArgs(sub.Flags().Args()); err != nil {
				t.Errorf("README: %q: %v", strings.Join(cmdline, " "), err)
			}
		}
	}
	if n < 50 {
		t.Fatalf("found %d virtconsole command lines in the README; the parser is broken", n)
	}
}

// readmeCommands returns the virtconsole commands of a shell line (also
// after a pipe, &&, ; or "until"), each as its words with quotes removed,
// up to the first redirection, pipe, list operator or comment. A word
// with a substitution ($VAR, $(…)) counts as one argument.
func readmeCommands(line string) [][]string {
	var cmds [][]string
	var words []string
	var w strings.Builder
	inWord, quote := false, byte(0)
	flush := func() {
		if inWord {
			words = append(words, w.String())
		}
		w.Reset()
		inWord = false
	}
	end := func() {
		flush()
		if len(words) > 0 {
			if base := words[0]; base == "virtconsole" || base == "./virtconsole" {
				cmds = append(cmds, words)
			}
		}
		words = nil
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				w.WriteByte(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(line) && line[i+1] == '\n':
			i++
		case c == ' ' || c == '\t' || c == '\n':
			flush()
			// Keywords and variable assignments before the command.
			if len(words) == 1 && (words[0] == "until" || words[0] == "then" || words[0] == "do" || words[0] == "sudo" || strings.Contains(words[0], "=")) {
				words = nil
			}
		case c == '|' || c == ';' || c == '&' || c == '(' || c == ')':
			end()
		case c == '#' && !inWord:
			end()
			return cmds
		case c == '>' || c == '<':
			flush()
			// The rest up to the next operator is the redirection's target.
			for i+1 < len(line) && strings.IndexByte("|;&", line[i+1]) < 0 {
				i++
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	end()
	return cmds
}

// TestREADMEMakeTargets: every `make TARGET` the README names is a rule
// of the Makefile; the long ones (bench, soak, measure-scale) are not run
// in CI, but cannot rot either. (Not make -n: it runs recipe lines that
// call $(MAKE), and test runs the whole suite that way.)
func TestREADMEMakeTargets(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z][a-z-]*)\s*:[^=]`).FindAllStringSubmatch(string(makefile), -1) {
		rules[m[1]] = true
	}
	named := regexp.MustCompile("`(?:[A-Z_]+=\\S+ )*make ([a-z][a-z-]*)").FindAllStringSubmatch(string(readme), -1)
	if len(named) < 5 || len(rules) < 5 {
		t.Fatalf("found %d make targets in the README and %d rules in the Makefile; the patterns are broken", len(named), len(rules))
	}
	for _, m := range named {
		if !rules[m[1]] {
			t.Errorf("README names make %s; the Makefile has no such rule", m[1])
		}
	}
}
