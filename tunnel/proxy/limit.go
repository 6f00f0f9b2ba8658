package proxy

import (
	"sync"
	"time"
)

// Limiter counts refused tokens per client address and says when a client
// has had too many within a window. Its memory is bounded: at most
// MaxClients addresses are tracked, the oldest forgotten first.
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
func (l *Limiter) Failed(host string) {
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
