package resolver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"sync"
)

// TokenTable is the token table of every resolver here: it maps tokens to
// values (what a token opens) and is safe for concurrent use.
//
// Lookups take constant time with respect to the token's content: entries
// are indexed by the SHA-256 of their token, so finding the candidates
// reveals nothing usable about the token, and each candidate is confirmed
// with a constant-time comparison.
//
// Entries belong to groups, named by keys of the owner's choosing (a
// libvirt domain, a token file), so that all the tokens read from one
// source are replaced at once when the source changes. Several entries
// may share a token (consoles sharing a libvirt secret); Lookup returns
// the first one put in, Take all of them. The empty token matches nothing.
type TokenTable[K comparable, V any] struct {
	mu     sync.RWMutex
	byHash map[[sha256.Size]byte][]*tokenEntry[K, V]
	groups map[K][]*tokenEntry[K, V]
}

// Token is an entry to put into a TokenTable: a token and what it opens.
type Token[V any] struct {
	Token string
	Value V
}

type tokenEntry[K comparable, V any] struct {
	token []byte
	sum   [sha256.Size]byte
	group K
	value V
}

// Lookup returns the value of the first entry whose token is token.
func (t *TokenTable[K, V]) Lookup(token string) (V, bool) {
	var zero V
	if token == "" {
		return zero, false
	}
	sum := sha256.Sum256([]byte(token))
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, e := range t.byHash[sum] {
		if subtle.ConstantTimeCompare(e.token, []byte(token)) == 1 {
			return e.value, true
		}
	}
	return zero, false
}

// LookupID returns the value of the first entry whose token's TokenID is
// id. IDs are not secret (the grant or request naming one is checked
// elsewhere), so this is a plain scan, not a constant-time comparison.
func (t *TokenTable[K, V]) LookupID(id string) (V, bool) {
	var zero V
	if len(id) != 12 {
		return zero, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for sum, entries := range t.byHash {
		if hex.EncodeToString(sum[:6]) == id && len(entries) > 0 {
			return entries[0].value, true
		}
	}
	return zero, false
}

// Find returns the value of the first entry, in no particular order,
// for which match reports true (a lookup by what the token opens, not by
// the token).
func (t *TokenTable[K, V]) Find(match func(V) bool) (V, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, entries := range t.groups {
		for _, e := range entries {
			if match(e.value) {
				return e.value, true
			}
		}
	}
	var zero V
	return zero, false
}

// Take removes every entry whose token is token and returns their values,
// in the order they were put in. Of concurrent Takes of one token, one
// gets the entries and the others none.
func (t *TokenTable[K, V]) Take(token string) []V {
	if token == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	t.mu.Lock()
	defer t.mu.Unlock()
	var hits []*tokenEntry[K, V]
	for _, e := range t.byHash[sum] {
		if subtle.ConstantTimeCompare(e.token, []byte(token)) == 1 {
			hits = append(hits, e)
		}
	}
	values := make([]V, 0, len(hits))
	for _, e := range hits {
		t.removeLocked(e)
		values = append(values, e.value)
	}
	return values
}

// Set replaces the entries of group with entries; none removes the group.
func (t *TokenTable[K, V]) Set(group K, entries []Token[V]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.groups[group] {
		t.unhashLocked(e)
	}
	delete(t.groups, group)
	t.addLocked(group, entries)
}

// Add adds entries to group, keeping the group's other entries.
func (t *TokenTable[K, V]) Add(group K, entries []Token[V]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(group, entries)
}

// Reset replaces every entry with groups.
func (t *TokenTable[K, V]) Reset(groups map[K][]Token[V]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byHash, t.groups = nil, nil
	for g, entries := range groups {
		t.addLocked(g, entries)
	}
}

// Len returns the number of entries.
func (t *TokenTable[K, V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, list := range t.groups {
		n += len(list)
	}
	return n
}

// GroupLen returns the number of entries of group.
func (t *TokenTable[K, V]) GroupLen(group K) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.groups[group])
}

func (t *TokenTable[K, V]) addLocked(group K, entries []Token[V]) {
	if len(entries) == 0 {
		return
	}
	if t.byHash == nil {
		t.byHash = map[[sha256.Size]byte][]*tokenEntry[K, V]{}
		t.groups = map[K][]*tokenEntry[K, V]{}
	}
	for _, in := range entries {
		e := &tokenEntry[K, V]{token: []byte(in.Token), sum: sha256.Sum256([]byte(in.Token)), group: group, value: in.Value}
		t.byHash[e.sum] = append(t.byHash[e.sum], e)
		t.groups[group] = append(t.groups[group], e)
	}
}

func (t *TokenTable[K, V]) removeLocked(e *tokenEntry[K, V]) {
	t.unhashLocked(e)
	t.groups[e.group] = without(t.groups[e.group], e)
	if len(t.groups[e.group]) == 0 {
		delete(t.groups, e.group)
	}
}

func (t *TokenTable[K, V]) unhashLocked(e *tokenEntry[K, V]) {
	t.byHash[e.sum] = without(t.byHash[e.sum], e)
	if len(t.byHash[e.sum]) == 0 {
		delete(t.byHash, e.sum)
	}
}

func without[E comparable](list []E, e E) []E {
	if i := slices.Index(list, e); i >= 0 {
		return slices.Delete(list, i, i+1)
	}
	return list
}

// TokenBytes is how many random bytes a new token holds: 256 bits.
const TokenBytes = 32

// NewToken returns a new random token: TokenBytes from crypto/rand in
// unpadded base64url (URL-safe, so it travels in a path or a JSON key as
// it is), as libvirt secrets hold them.
func NewToken() string {
	t, _ := NewTokenFrom(rand.Reader) // crypto/rand.Reader does not fail
	return t
}

// NewTokenFrom is NewToken with the bytes read from r.
func NewTokenFrom(r io.Reader) (string, error) {
	b := make([]byte, TokenBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
