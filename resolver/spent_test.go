package resolver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A static single-use token stays spent after a restart (a new LoadFile
// of the same file), and a refund is remembered too; the spent-token
// file holds hashes, never tokens, and only its owner can read it.
func TestStaticSpentSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	writeFile(t, path, tokenFile(tokA, tokB))
	ctx := context.Background()

	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSingleUse(true)
	for _, tok := range []string{tokA, tokB} {
		if err := s.Consume(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Refund(ctx, tokB); err != nil {
		t.Fatal(err)
	}

	restarted, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, restarted, tokA)
	mustResolve(t, restarted, tokB)
	wantConsumeNotFound(t, restarted, tokA)

	data, err := os.ReadFile(SpentPath(path))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{tokA, tokB, "SECRET"} {
		if strings.Contains(string(data), tok) {
			t.Fatalf("the spent-token file contains a token:\n%s", data)
		}
	}
	if fi, err := os.Stat(SpentPath(path)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("spent-token file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// When the spent set cannot be recorded, Consume fails (503 at the
// proxy) and the token stays valid: a restart could not revive it.
func TestStaticSpentUnwritable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.json")
	writeFile(t, path, tokenFile(tokA))
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A directory where the file should be: renaming over it fails,
	// also for root.
	if err := os.Mkdir(SpentPath(path), 0o700); err != nil {
		t.Fatal(err)
	}
	err = s.Consume(context.Background(), tokA)
	if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), tokA) {
		t.Fatalf("Consume: %v, want ErrUnavailable without the token", err)
	}
	mustResolve(t, s, tokA)
}

// A corrupt spent-token file stops the load (rather than reviving every
// spent token), with a one-line error naming the file and the line.
func TestStaticSpentCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, tokenFile(tokA))
	writeFile(t, SpentPath(path), spentHeader+"not-a-hash\n")
	_, err := LoadFile(path)
	if err == nil || !strings.Contains(err.Error(), SpentPath(path)) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("LoadFile: %v", err)
	}
}
