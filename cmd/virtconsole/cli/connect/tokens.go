package connect

import (
	"context"
	"sync"
)

// tokenSource hands out the token for each connection through the proxy.
// A token file or the environment gives one token for all. With libvirt
// access (DOMAIN) a fresh token is read for every new session, since
// tokens may be single-use: per connection, or for SPICE per group of
// connections open at once (one viewer session).
type tokenSource struct {
	fixed string
	fetch func(context.Context) (string, error)
	spans bool

	mu      sync.Mutex
	current string
	used    bool // current was handed out
	open    int  // connections open now
}

// get returns the token for a new connection and the function to call
// when that connection ends.
func (ts *tokenSource) get(ctx context.Context) (string, func(), error) {
	if ts.fetch == nil {
		return ts.fixed, func() {}, nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch {
	case ts.spans && ts.open > 0:
		// Another connection of the live session: same token.
	case !ts.used:
		// The token read at start, not handed out yet.
	default:
		tok, err := ts.fetch(ctx)
		if err != nil {
			return "", nil, err
		}
		ts.current = tok
	}
	ts.used = true
	ts.open++
	var once sync.Once
	return ts.current, func() {
		once.Do(func() {
			ts.mu.Lock()
			ts.open--
			ts.mu.Unlock()
		})
	}, nil
}
