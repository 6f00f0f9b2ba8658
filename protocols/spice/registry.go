package spice

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"
)

// DefaultGrace is how long after a session's main link the Registry
// accepts channels that are not in the session's channel list (or before
// the list is known) when Registry.Grace is zero.
const DefaultGrace = 5 * time.Second

// Registry is the proxy's record of live SPICE sessions, keyed by a
// fingerprint of the token that opened them. It decides which
// connections a token may open, from their link messages:
//
//   - A main channel with connection id 0 opens a new session, unless the
//     token already has a live one (a takeover link: spice-server would
//     drop, and in QEMU 7.2 sometimes crash on, the live session) or is a
//     single-use token that has opened one before.
//   - Any other channel must name the live session: its connection id must
//     be the session id QEMU gave the main channel (SPICE_MSG_MAIN_INIT),
//     and the channel (type and id) must be in the session's channel list
//     (SPICE_MSG_MAIN_CHANNELS_LIST), or be of a channel type SPICE
//     defines and link within Grace of the main link (viewers open some
//     channels before the list arrives, and QEMU refuses unknown ones
//     itself). A channel already connected is not accepted twice.
//   - A session ends when its last connection closes (Lease.Close); a
//     reusable token may then open a new one, a single-use token never.
//
// Tokens are never stored: sessions are keyed by an HMAC of the token
// under a key the Registry draws at random, so that neither memory nor
// logs (Fingerprint) hold anything that opens a console. Registry is safe
// for concurrent use; its zero value is ready, with Grace and Now set (if
// at all) before first use.
type Registry struct {
	// Grace is how long after the main link channels outside the list
	// are accepted; zero means DefaultGrace.
	Grace time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	key      []byte
	sessions map[fingerprint]*session
	spent    map[fingerprint]struct{} // single-use tokens that opened a session
}

type fingerprint [sha256.Size]byte

// short is a fingerprint's form for logs: enough to tell sessions apart,
// useless for guessing the token.
func (f fingerprint) short() string { return hex.EncodeToString(f[:6]) }

type session struct {
	fp      fingerprint
	opened  time.Time // the main link's admission
	info    MainInfo
	conns   int               // leases not yet closed
	linked  map[ChannelID]int // open leases per channel
	removed bool
}

// TokenState is what the Registry knows of a token.
type TokenState int

const (
	// TokenFresh: the token has no live session and may open one.
	TokenFresh TokenState = iota
	// TokenLive: the token has a live session; only that session's
	// further channels are accepted.
	TokenLive
	// TokenSpent: a single-use token whose session has ended.
	TokenSpent
)

func (s TokenState) String() string {
	switch s {
	case TokenFresh:
		return "fresh"
	case TokenLive:
		return "live"
	case TokenSpent:
		return "spent"
	}
	return fmt.Sprintf("TokenState(%d)", int(s))
}

// RefusedError is a connection the Registry refused. Its Error is one
// line for the proxy's log (with the session's fingerprint, never the
// token); Code is the link error to answer the viewer with (Refuse).
type RefusedError struct {
	Code    LinkError
	Session string // fingerprint of the token's session, for logs
	Channel ChannelID
	Reason  string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("spice: refused a %s link for session %s: %s", e.Channel, e.Session, e.Reason)
}

func (e *RefusedError) linkError() LinkError { return e.Code }

// Lease is one admitted connection of a session. Close it when the
// connection ends.
type Lease struct {
	r       *Registry
	s       *session
	channel ChannelID
	once    sync.Once
}

// Fingerprint returns a short fingerprint of token for logs: the same
// token gives the same fingerprint in this Registry, and it reveals
// nothing usable about the token.
func (r *Registry) Fingerprint(token string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fingerprint(token).short()
}

// State returns what the Registry knows of token, so that the proxy can
// refuse a spent token before accepting its websocket.
func (r *Registry) State(token string) TokenState {
	r.mu.Lock()
	defer r.mu.Unlock()
	fp := r.fingerprint(token)
	switch {
	case r.sessions[fp] != nil:
		return TokenLive
	case r.isSpent(fp):
		return TokenSpent
	}
	return TokenFresh
}

// Admit decides whether a connection that presented token and sent link
// may go on to QEMU. singleUse marks a token that may open one session
// only (it is spent when its main channel is admitted). On success the
// caller holds a Lease until the connection ends; a refusal is a
// *RefusedError.
func (r *Registry) Admit(token string, singleUse bool, link *Link) (*Lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fp := r.fingerprint(token)
	ch := link.Channel()
	refuse := func(code LinkError, format string, args ...any) error {
		return &RefusedError{Code: code, Session: fp.short(), Channel: ch, Reason: fmt.Sprintf(format, args...)}
	}
	s := r.sessions[fp]
	now := r.now()

	if link.ChannelType == ChannelMain {
		switch {
		case link.ConnectionID != 0:
			// spice-server takes it for a migration target.
			return nil, refuse(LinkErrBadConnectionID, "a main channel must link with connection id 0, not %d", link.ConnectionID)
		case s != nil:
			return nil, refuse(LinkErrPermissionDenied, "the token's session is live; a second main channel would take it over")
		case r.isSpent(fp):
			return nil, refuse(LinkErrPermissionDenied, "the token is single-use and has opened its session")
		}
		s = &session{fp: fp, opened: now, linked: make(map[ChannelID]int)}
		if r.sessions == nil {
			r.sessions = make(map[fingerprint]*session)
		}
		r.sessions[fp] = s
		if singleUse {
			if r.spent == nil {
				r.spent = make(map[fingerprint]struct{})
			}
			r.spent[fp] = struct{}{}
		}
		return r.lease(s, ch), nil
	}

	switch {
	case s == nil:
		return nil, refuse(LinkErrBadConnectionID, "the token has no live session")
	case !s.info.HasSessionID:
		return nil, refuse(LinkErrBadConnectionID, "the session has no session id yet (QEMU has not sent SPICE_MSG_MAIN_INIT)")
	case link.ConnectionID != s.info.SessionID:
		return nil, refuse(LinkErrBadConnectionID, "connection id %d is not the session's", link.ConnectionID)
	case !link.ChannelType.Known():
		return nil, refuse(LinkErrChannelNotAvail, "SPICE defines no channel type %d", uint8(link.ChannelType))
	case s.linked[ch] > 0:
		return nil, refuse(LinkErrPermissionDenied, "the session has %s connected already", ch)
	}
	listed := s.info.HasChannels && slices.Contains(s.info.Channels, ch)
	if !listed {
		grace := r.Grace
		if grace <= 0 {
			grace = DefaultGrace
		}
		if age := now.Sub(s.opened); age > grace {
			what := "not in the session's channel list"
			if !s.info.HasChannels {
				what = "linked before the session's channel list"
			}
			return nil, refuse(LinkErrChannelNotAvail, "%s is %s, %v after the main link (grace %v)", ch, what, age.Round(time.Millisecond), grace)
		}
	}
	return r.lease(s, ch), nil
}

func (r *Registry) lease(s *session, ch ChannelID) *Lease {
	s.conns++
	s.linked[ch]++
	return &Lease{r: r, s: s, channel: ch}
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// fingerprint is HMAC-SHA256(key, token), with the key drawn on first use.
// r.mu is held.
func (r *Registry) fingerprint(token string) fingerprint {
	if r.key == nil {
		r.key = make([]byte, 32)
		rand.Read(r.key)
	}
	m := hmac.New(sha256.New, r.key)
	m.Write([]byte(token))
	var fp fingerprint
	m.Sum(fp[:0])
	return fp
}

func (r *Registry) isSpent(fp fingerprint) bool {
	_, ok := r.spent[fp]
	return ok
}

// Live returns the number of live sessions.
func (r *Registry) Live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// Session returns the fingerprint of the lease's session, for logs.
func (l *Lease) Session() string { return l.s.fp.short() }

// Channel returns the channel the lease was admitted for.
func (l *Lease) Channel() ChannelID { return l.channel }

// Info returns what the session's main channel has reported so far.
func (l *Lease) Info() MainInfo {
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	info := l.s.info
	info.Channels = slices.Clone(info.Channels)
	return info
}

// Observe records what the main channel's watcher reports (use it as
// WatchMain's report function). It is ignored on other channels' leases
// and after the lease is closed.
func (l *Lease) Observe(info MainInfo) {
	if l.channel.Type != ChannelMain {
		return
	}
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	if l.s.removed {
		return
	}
	if info.HasSessionID {
		l.s.info.SessionID, l.s.info.HasSessionID = info.SessionID, true
	}
	if info.HasChannels {
		l.s.info.Channels, l.s.info.HasChannels = slices.Clone(info.Channels), true
	}
}

// Close ends the lease; the session ends with its last lease. Closing
// twice is harmless.
func (l *Lease) Close() {
	l.once.Do(func() {
		r := l.r
		r.mu.Lock()
		defer r.mu.Unlock()
		s := l.s
		s.conns--
		if s.linked[l.channel]--; s.linked[l.channel] <= 0 {
			delete(s.linked, l.channel)
		}
		if s.conns == 0 {
			s.removed = true
			if r.sessions[s.fp] == s {
				delete(r.sessions, s.fp)
			}
		}
	})
}
