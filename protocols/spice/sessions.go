package spice

import (
	"context"
	"log/slog"
	"net"
	"sync"

	"github.com/virtconsole/virtconsole/protocols"
)

// Sessions is what a proxy needs to follow SPICE sessions across their
// connections: the Registry, plus the target each live session reaches,
// so that a session's later channels join it without resolving their
// token again (a single-use token was consumed when the session started).
// tunnel/proxy's Proxy takes one (its SPICE field): it calls Join before
// resolving a token, and Handshaker for each SPICE connection. The zero
// value is ready to use.
type Sessions struct {
	Registry Registry
	// Logger receives a line when a session's main channel reports the
	// session id and channel list. Nil means slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	targets map[fingerprint]protocols.Target
}

// Join returns the target of the live session token opened, if any.
func (s *Sessions) Join(token string) (protocols.Target, bool) {
	if s.Registry.State(token) != TokenLive {
		return protocols.Target{}, false
	}
	fp := s.Registry.fingerprint(token)
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.targets[fp]
	return t, ok
}

// LiveAt reports whether a live session reaches t's console. A SPICE
// console cannot be shared: QEMU 7.2 crashed on a second main channel
// on a live session (PROTOCOLS.md), so the proxy refuses a second
// session of one console rather than let QEMU see it.
func (s *Sessions) LiveAt(t protocols.Target) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, lt := range s.targets {
		if lt.Kind == t.Kind && lt.Address == t.Address {
			return true
		}
	}
	return false
}

// Handshaker returns the handshaker for one connection that presented
// token for t, and the function to call when the connection ends. It
// returns nil for targets that are not SPICE.
func (s *Sessions) Handshaker(t protocols.Target, token string, singleUse bool) (protocols.Handshaker, func(), error) {
	if t.Kind != protocols.KindSPICE {
		return nil, nil, nil
	}
	c := &sessionConn{s: s, token: token, target: t}
	c.h = Handshaker{
		Admit: func(l *Link) error {
			lease, err := s.Registry.Admit(token, singleUse, l)
			if err != nil {
				return err
			}
			c.lease = lease
			if l.ChannelType == ChannelMain {
				s.mu.Lock()
				if s.targets == nil {
					s.targets = map[fingerprint]protocols.Target{}
				}
				s.targets[s.Registry.fingerprint(token)] = t
				s.mu.Unlock()
			}
			return nil
		},
		OnMain: c.observe,
	}
	return c, c.release, nil
}

func (s *Sessions) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// sessionConn is the handshaker of one connection of a session.
type sessionConn struct {
	s      *Sessions
	h      Handshaker
	token  string
	target protocols.Target
	lease  *Lease

	logged sync.Once
}

func (c *sessionConn) Server(ctx context.Context, qemu net.Conn, t protocols.Target) (net.Conn, protocols.Info, error) {
	return c.h.Server(ctx, qemu, t)
}

func (c *sessionConn) Client(ctx context.Context, viewer, qemu net.Conn) (net.Conn, net.Conn, error) {
	return c.h.Client(ctx, viewer, qemu)
}

// Describe names the connection's channel and session for the proxy's log.
func (c *sessionConn) Describe() protocols.Info {
	if c.lease == nil {
		return protocols.Info{}
	}
	return protocols.Info{Session: c.lease.Session(), Channel: c.lease.Channel().String()}
}

func (c *sessionConn) observe(i MainInfo) {
	c.lease.Observe(i)
	if i.HasSessionID && i.HasChannels {
		c.logged.Do(func() {
			c.s.logger().Info("spice session", "session", c.lease.Session(), "spice_session_id", i.SessionID,
				"channels", i.Channels, "console", c.target.Address)
		})
	}
}

// release ends the connection's lease and forgets the session's target
// once the session has ended.
func (c *sessionConn) release() {
	if c.lease == nil {
		return
	}
	c.lease.Close()
	if c.s.Registry.State(c.token) != TokenLive {
		c.s.mu.Lock()
		delete(c.s.targets, c.s.Registry.fingerprint(c.token))
		c.s.mu.Unlock()
	}
}
