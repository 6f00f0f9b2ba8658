package proxy

import (
	"net/http"
	"sync"
)

// shares counts the sessions open or opening per token and per client
// address, so that one token's holder, or one address, cannot take every
// slot of MaxSessions and deny everyone else. Its maps hold only keys
// with sessions, so they are bounded by MaxSessions.
type shares struct {
	mu       sync.Mutex
	byToken  map[string]int
	byClient map[string]int
}

// takeShare claims a session slot for token and host within
// MaxSessionsPerToken and MaxSessionsPerClient, or refuses with 503.
// The caller calls release once the session (or the attempt) has ended.
func (p *Proxy) takeShare(token, host string) (release func(), e *Error) {
	s := &p.shares
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := p.MaxSessionsPerToken; n > 0 && s.byToken[token] >= n {
		return nil, fail(http.StatusServiceUnavailable, nil, "too many sessions with this token (%d); try again later", n)
	}
	if n := p.MaxSessionsPerClient; n > 0 && s.byClient[host] >= n {
		return nil, fail(http.StatusServiceUnavailable, nil, "too many sessions from %s (%d); try again later", host, n)
	}
	if s.byToken == nil {
		s.byToken, s.byClient = make(map[string]int), make(map[string]int)
	}
	s.byToken[token]++
	s.byClient[host]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		decr(s.byToken, token)
		decr(s.byClient, host)
	}, nil
}

func decr(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}
