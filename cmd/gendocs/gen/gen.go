// Package gen generates virtconsole's man pages and completion scripts.
package gen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/root"
)

// manDate is fixed so that regenerating unchanged help yields unchanged
// pages (the staleness test compares bytes).
var manDate = time.Date(2026, time.November, 1, 0, 0, 0, 0, time.UTC)

// Files returns every generated file, keyed by its path relative to the
// repository root.
func Files() (map[string][]byte, error) {
	files := map[string][]byte{}
	tmp, err := os.MkdirTemp("", "gendocs")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	cmd := newRoot()
	hdr := &doc.GenManHeader{Title: "VIRTCONSOLE", Section: "1", Source: "virtconsole", Manual: "virtconsole manual", Date: &manDate}
	if err := doc.GenManTree(cmd, hdr, tmp); err != nil {
		return nil, fmt.Errorf("man pages: %w", err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(tmp, e.Name()))
		if err != nil {
			return nil, err
		}
		files[filepath.Join("man", e.Name())] = b
	}
	// GenManTree leaves out help topics ("virtconsole help exit-codes"):
	// they get a page of their own.
	for _, c := range cmd.Commands() {
		if !c.IsAdditionalHelpTopicCommand() {
			continue
		}
		var b bytes.Buffer
		h := *hdr
		if err := doc.GenMan(c, &h, &b); err != nil {
			return nil, fmt.Errorf("man page %s: %w", c.CommandPath(), err)
		}
		files[filepath.Join("man", strings.ReplaceAll(c.CommandPath(), " ", "-")+".1")] = b.Bytes()
	}

	for name, gen := range map[string]func(*cobra.Command, *bytes.Buffer) error{
		"virtconsole.bash": func(c *cobra.Command, b *bytes.Buffer) error { return c.GenBashCompletionV2(b, true) },
		"_virtconsole":     func(c *cobra.Command, b *bytes.Buffer) error { return c.GenZshCompletion(b) },
		"virtconsole.fish": func(c *cobra.Command, b *bytes.Buffer) error { return c.GenFishCompletion(b, true) },
		"virtconsole.ps1":  func(c *cobra.Command, b *bytes.Buffer) error { return c.GenPowerShellCompletionWithDesc(b) },
	} {
		var b bytes.Buffer
		if err := gen(newRoot(), &b); err != nil {
			return nil, fmt.Errorf("completion %s: %w", name, err)
		}
		files[filepath.Join("completions", name)] = b.Bytes()
	}
	return files, nil
}

func newRoot() *cobra.Command {
	io := cmdutil.Test(nil, &bytes.Buffer{}, &bytes.Buffer{})
	cmd := root.NewCmdRoot(cmdutil.NewFactory(io))
	cmd.DisableAutoGenTag = true
	cmd.InitDefaultCompletionCmd()
	return cmd
}

// Write writes every generated file under dir, replacing the old man/
// and completions/ contents.
func Write(dir string) error {
	files, err := Files()
	if err != nil {
		return err
	}
	for _, sub := range []string{"man", "completions"} {
		os.RemoveAll(filepath.Join(dir, sub))
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
