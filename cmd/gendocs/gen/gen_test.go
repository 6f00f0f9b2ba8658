package gen

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// TestGeneratedFilesUpToDate fails when man/ or completions/ differ from
// what the command tree generates: run "go generate ./..." and commit.
func TestGeneratedFilesUpToDate(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	files, err := Files()
	if err != nil {
		t.Fatal(err)
	}
	var stale []string
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || !bytes.Equal(got, want) {
			stale = append(stale, name)
		}
	}
	for _, sub := range []string{"man", "completions"} {
		entries, _ := os.ReadDir(filepath.Join(root, sub))
		for _, e := range entries {
			if _, ok := files[filepath.Join(sub, e.Name())]; !ok {
				stale = append(stale, filepath.Join(sub, e.Name())+" (no longer generated)")
			}
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Fatalf("generated docs are stale: %v; run 'go generate ./...' and commit man/ and completions/", stale)
	}
}
