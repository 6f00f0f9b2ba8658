package proxy

import (
	"sync"
	"time"
)

// sampler bounds the log lines one client can cause: at most burst lines
// per key (client address) per interval; then one line saying the rest
// are not logged, and the next line logged for that key, in a later
// interval, carries how many were left out. Its memory is bounded like
// the Limiter's. The zero value logs 10 lines per address per minute.
type sampler struct {
	burst    int
	interval time.Duration
	maxKeys  int
	now      func() time.Time

	mu   sync.Mutex
	keys map[string]*sampled
}

type sampled struct {
	start      time.Time
	n          int // events this interval
	suppressed int // of which not logged
}

// verdict is what to do with one event.
type verdict struct {
	log        bool // log it
	quiet      bool // it is the first left out: say that the rest will be
	suppressed int  // with log: events left out since the last one logged
}

func (s *sampler) admit(key string) verdict {
	burst, interval, max := s.burst, s.interval, s.maxKeys
	if burst <= 0 {
		burst = 10
	}
	if interval <= 0 {
		interval = time.Minute
	}
	if max <= 0 {
		max = 10000
	}
	now := time.Now()
	if s.now != nil {
		now = s.now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = make(map[string]*sampled)
	}
	e := s.keys[key]
	var carried int
	switch {
	case e == nil:
		if len(s.keys) >= max {
			s.evict(now, interval)
		}
		e = &sampled{start: now}
		s.keys[key] = e
	case now.Sub(e.start) >= interval:
		carried = e.suppressed
		*e = sampled{start: now}
	}
	e.n++
	if e.n <= burst {
		return verdict{log: true, suppressed: carried}
	}
	e.suppressed++
	return verdict{quiet: e.n == burst+1}
}

// evict drops expired entries, or the oldest one if none has expired.
func (s *sampler) evict(now time.Time, interval time.Duration) {
	n := len(s.keys)
	var oldest string
	var oldestStart time.Time
	for k, e := range s.keys {
		if now.Sub(e.start) >= interval {
			delete(s.keys, k)
			continue
		}
		if oldest == "" || e.start.Before(oldestStart) {
			oldest, oldestStart = k, e.start
		}
	}
	if len(s.keys) == n && oldest != "" {
		delete(s.keys, oldest)
	}
}
