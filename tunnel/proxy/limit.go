package proxy

import (
	"net/http"
	"sync"
	"time"
)

// Limiter counts refused tokens per client address and says when a client
// has had too many within a window. The proxy asks it only about requests
// whose token was refused, which it then answers 429 rather than 404: a
// valid token is never turned away for its address's failures. Its
// memory is bounded: at most MaxClients addresses are tracked, the oldest
// forgotten first.
type Limiter struct {
	// Failures allowed per Window before requests are refused with 429.
	Failures int
	Window   time.Duration
	// MaxClients bounds the table; zero means 10000.
	MaxClients int

	mu      sync.Mutex
	clients map[string]*failures
	now     func() time.Time
}

type failures struct {
	start time.Time
	count int
}

// NewLimiter returns a Limiter allowing n failures per window.
func NewLimiter(n int, window time.Duration) *Limiter {
	return &Limiter{Failures: n, Window: window}
}

func (l *Limiter) clock() time.Time {
	if l.now != nil {
		return l.now()
	}
	return time.Now()
}

// Allow reports whether host may try a token now.
func (l *Limiter) Allow(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.clients[host]
	if f == nil {
		return true
	}
	if l.clock().Sub(f.start) > l.Window {
		delete(l.clients, host)
		return true
	}
	return f.count < l.Failures
}

// Failed records a refused token from host.
func (l *Limiter) Failed(host string) { l.Over(host) }

// Over records a refused token from host and reports whether host has
// now had more than Failures within the window.
func (l *Limiter) Over(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock()
	if l.clients == nil {
		l.clients = make(map[string]*failures)
	}
	f := l.clients[host]
	if f == nil || now.Sub(f.start) > l.Window {
		max := l.MaxClients
		if max <= 0 {
			max = 10000
		}
		if len(l.clients) >= max {
			l.evict(now, max)
		}
		f = &failures{start: now}
		l.clients[host] = f
	}
	f.count++
	return f.count > l.Failures
}

// evict drops expired entries, or the oldest one if none has expired.
func (l *Limiter) evict(now time.Time, max int) {
	var oldest string
	var oldestStart time.Time
	for h, f := range l.clients {
		if now.Sub(f.start) > l.Window {
			delete(l.clients, h)
			continue
		}
		if oldest == "" || f.start.Before(oldestStart) {
			oldest, oldestStart = h, f.start
		}
	}
	if len(l.clients) >= max && oldest != "" {
		delete(l.clients, oldest)
	}
}

// refused counts a refused token (or none) from host and returns the
// refusal to answer with: e, or 429 once host is over the Limiter's
// bound. Only requests whose token failed get here: the token is checked
// first, so that a valid one is never refused for its neighbours'
// failures.
func (p *Proxy) refused(host string, e *Error) *Error {
	if p.Limiter == nil || !p.Limiter.Over(host) {
		return e
	}
	return fail(http.StatusTooManyRequests, e.Err, "too many refused tokens from %s; try again later", host)
}
