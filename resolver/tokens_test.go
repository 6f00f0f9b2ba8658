package resolver

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func entries(pairs ...string) []Token[string] {
	var out []Token[string]
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, Token[string]{Token: pairs[i], Value: pairs[i+1]})
	}
	return out
}

func TestTokenTable(t *testing.T) {
	var tt TokenTable[string, string]
	lookup := func(token, want string) {
		t.Helper()
		got, ok := tt.Lookup(token)
		if want == "" && ok {
			t.Errorf("Lookup(%q) = %q, want none", token, got)
		} else if want != "" && got != want {
			t.Errorf("Lookup(%q) = %q, %v, want %q", token, got, ok, want)
		}
	}
	lookup("a", "") // the zero value is an empty table

	tt.Set("dom1", entries("a", "vnc1", "b", "serial1"))
	tt.Set("dom2", entries("c", "vnc2", "a", "shared"))
	lookup("a", "vnc1") // the first one put in
	lookup("c", "vnc2")
	lookup("", "")
	lookup("A", "")
	if tt.Len() != 4 || tt.GroupLen("dom1") != 2 {
		t.Fatalf("Len %d, GroupLen %d", tt.Len(), tt.GroupLen("dom1"))
	}

	// Replacing a group drops its old tokens, and no other.
	tt.Set("dom1", entries("d", "vnc1"))
	lookup("b", "")
	lookup("a", "shared")
	lookup("d", "vnc1")
	tt.Set("dom1", nil)
	lookup("d", "")
	if tt.GroupLen("dom1") != 0 || tt.Len() != 2 {
		t.Fatalf("after removing dom1: Len %d", tt.Len())
	}

	// Take removes every entry with the token, in every group.
	tt.Add("dom3", entries("a", "other"))
	if got := tt.Take("a"); !slices.Equal(got, []string{"shared", "other"}) {
		t.Errorf("Take = %q", got)
	}
	lookup("a", "")
	if got := tt.Take("a"); len(got) != 0 {
		t.Errorf("second Take = %q", got)
	}
	if tt.GroupLen("dom3") != 0 || tt.GroupLen("dom2") != 1 {
		t.Errorf("groups after Take: dom2 %d, dom3 %d", tt.GroupLen("dom2"), tt.GroupLen("dom3"))
	}

	tt.Reset(map[string][]Token[string]{"x": entries("e", "1")})
	lookup("c", "")
	lookup("e", "1")
	tt.Reset(nil)
	if tt.Len() != 0 {
		t.Errorf("Len after Reset(nil) = %d", tt.Len())
	}
}

// TestTokenTableTakeRace: of concurrent Takes of one token, exactly one
// gets its entries, while lookups and group replacements run alongside.
func TestTokenTableTakeRace(t *testing.T) {
	for round := range 50 {
		var tt TokenTable[int, int]
		tt.Set(0, []Token[int]{{"tok", 1}, {"tok", 2}, {"other", 3}})
		var wins, got atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				if v := tt.Take("tok"); len(v) > 0 {
					wins.Add(1)
					got.Add(int32(len(v)))
				}
			})
		}
		wg.Go(func() {
			<-start
			for i := range 20 {
				tt.Lookup("tok")
				tt.Set(1, []Token[int]{{"x", i}})
			}
		})
		close(start)
		wg.Wait()
		if wins.Load() != 1 || got.Load() != 2 {
			t.Fatalf("round %d: %d Takes won, %d entries taken; want 1 and 2", round, wins.Load(), got.Load())
		}
		if v, ok := tt.Lookup("other"); !ok || v != 3 {
			t.Fatalf("round %d: other token lost", round)
		}
	}
}
