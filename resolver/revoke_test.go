package resolver

import (
	"context"
	"path/filepath"
	"testing"
)

// OnReload runs after a reload has installed the new table, so that it
// can tell revoked tokens (Lists false) from spent ones (Lists true).
func TestStaticOnReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, tokenFile(tokA, tokB))
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSingleUse(true)
	if err := s.Consume(context.Background(), tokB); err != nil {
		t.Fatal(err)
	}
	var listed []bool
	s.OnReload(func() { listed = []bool{s.Lists(tokA), s.Lists(tokB)} })
	writeFile(t, path, tokenFile(tokB))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0] || !listed[1] {
		t.Fatalf("OnReload saw Lists(revoked, spent) = %v, want [false true]", listed)
	}
}
