package resolver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func tokenFile(tokens ...string) string {
	var b strings.Builder
	b.WriteString("{\n")
	for i, tok := range tokens {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `  %q: {"type":"vnc","address":"127.0.0.1:%d"}`, tok, 5901+i)
	}
	b.WriteString("\n}\n")
	return b.String()
}

func wantConsumeNotFound(t *testing.T, s *Static, token string) {
	t.Helper()
	err := s.Consume(context.Background(), token)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Consume: err = %v, want ErrNotFound", err)
	}
	if token != "" && strings.Contains(err.Error(), token) {
		t.Fatalf("Consume error contains the token: %v", err)
	}
}

func TestStaticReusableByDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, tokenFile(tokA))
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewStatic(map[string]Console{tokB: {Type: "vnc", Address: "127.0.0.1:5901"}})
	if err != nil {
		t.Fatal(err)
	}
	var _ SingleUser = s
	for _, x := range []*Static{s, n} {
		if x.SingleUse() {
			t.Error("SingleUse() = true by default, want false (reusable)")
		}
	}
	for range 3 {
		mustResolve(t, s, tokA)
		mustResolve(t, n, tokB)
	}
	s.SetSingleUse(true)
	if !s.SingleUse() {
		t.Error("SetSingleUse(true): SingleUse() = false")
	}
	s.SetSingleUse(false)
	if s.SingleUse() {
		t.Error("SetSingleUse(false): SingleUse() = true")
	}
}

func TestStaticConsume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, tokenFile(tokA, tokB))
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSingleUse(true)
	ctx := context.Background()

	mustResolve(t, s, tokA)
	if err := s.Consume(ctx, tokA); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	wantNotFound(t, s, tokA)
	wantConsumeNotFound(t, s, tokA)
	// Other tokens are untouched.
	mustResolve(t, s, tokB)
	mustResolve(t, s, tokB)
	// Unknown, near-miss and empty tokens.
	for _, bad := range []string{"", tokC, tokB + "x", tokB[:len(tokB)-1]} {
		wantConsumeNotFound(t, s, bad)
	}
	mustResolve(t, s, tokB)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Consume(cctx, tokB); !errors.Is(err, context.Canceled) {
		t.Errorf("Consume with cancelled ctx: %v", err)
	}
	mustResolve(t, s, tokB)

	// Only digests are kept.
	s.spentMu.RLock()
	if len(s.spent) != 1 {
		t.Errorf("%d spent digests, want 1", len(s.spent))
	}
	s.spentMu.RUnlock()

	// NewStatic tables consume the same way.
	n, err := NewStatic(map[string]Console{tokC: {Type: "serial", Address: "127.0.0.1:4555"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Consume(ctx, tokC); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, n, tokC)
}

func TestStaticSpentSurvivesReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, tokenFile(tokA, tokB))
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSingleUse(true)
	if err := s.Consume(context.Background(), tokA); err != nil {
		t.Fatal(err)
	}

	// The file still lists it, with another token added.
	replaceFile(t, path, tokenFile(tokA, tokB, tokC))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 {
		t.Fatalf("Len = %d after reload, want 3", s.Len())
	}
	wantNotFound(t, s, tokA)
	wantConsumeNotFound(t, s, tokA)
	mustResolve(t, s, tokB)
	mustResolve(t, s, tokC)

	// Removed, then listed again: still spent.
	replaceFile(t, path, tokenFile(tokB))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, tokenFile(tokC, tokA, tokB))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	wantNotFound(t, s, tokA)
	mustResolve(t, s, tokB)
	mustResolve(t, s, tokC)

	// The policy does not revive it either.
	s.SetSingleUse(false)
	wantNotFound(t, s, tokA)
}

// TestStaticConcurrentConsume races 8 consumers per token, with reloads
// and resolves going on: exactly one consume of each token wins.
func TestStaticConcurrentConsume(t *testing.T) {
	const tokens, racers = 50, 8
	var all []string
	for i := range tokens {
		all = append(all, fmt.Sprintf("race-%02d-SECRET", i))
	}
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, tokenFile(all...))
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s.SetSingleUse(true)

	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Reload(); err != nil {
				t.Error(err)
				return
			}
		}
	})
	bg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, err := s.Resolve(context.Background(), all[i%tokens])
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Error(err)
				return
			}
		}
	})

	for _, tok := range all {
		var wins, notFound atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range racers {
			wg.Go(func() {
				<-start
				switch err := s.Consume(context.Background(), tok); {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, ErrNotFound):
					notFound.Add(1)
				default:
					t.Errorf("Consume: %v", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || notFound.Load() != racers-1 {
			t.Fatalf("%d consumes won and %d got ErrNotFound, want 1 and %d", wins.Load(), notFound.Load(), racers-1)
		}
		wantNotFound(t, s, tok)
	}
	close(stop)
	bg.Wait()
}
