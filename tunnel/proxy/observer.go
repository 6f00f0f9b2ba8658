package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
)

// Observer receives what the proxy does with each request: one source of
// events for every consumer (metrics, the audit log), so that they cannot
// disagree. Its methods are called on the request's goroutine, possibly
// for many requests at once, and the request waits for them: they must
// return quickly (an append to a local file is about the most they
// should do). The *Refusal and *Session passed belong to the proxy: an
// Observer may read them during the call (and a Session's byte counters
// at any time until SessionEnd has returned) but not keep them.
//
// No field of either ever holds the token or a password: TokenID is a
// digest of the token.
type Observer interface {
	// Refused is called for every request refused before the websocket
	// upgrade (unlike the log, refusals are not sampled).
	Refused(*Refusal)
	// SessionStart is called once a session is about to pass bytes, or
	// failed after the upgrade (StartErr set; no SessionEnd follows).
	SessionStart(*Session)
	// SessionEnd is called when a started session has ended.
	SessionEnd(*Session)
}

// Observers passes each event to every Observer in turn.
type Observers []Observer

// Refused implements Observer.
func (obs Observers) Refused(r *Refusal) {
	for _, o := range obs {
		o.Refused(r)
	}
}

// SessionStart implements Observer.
func (obs Observers) SessionStart(s *Session) {
	for _, o := range obs {
		o.SessionStart(s)
	}
}

// SessionEnd implements Observer.
func (obs Observers) SessionEnd(s *Session) {
	for _, o := range obs {
		o.SessionEnd(s)
	}
}

// Client is who made a request.
type Client struct {
	// Addr is the peer's address (host:port) as the listener saw it.
	Addr string
	// ForwardedFor is the client's address according to X-Forwarded-For,
	// only with TrustForwarded; "" otherwise.
	ForwardedFor string
	// CertSubject is the subject of the client's certificate when the
	// listener requires one (mutual TLS); "" otherwise.
	CertSubject string
}

// Refusal is a request refused before the websocket upgrade.
type Refusal struct {
	Time   time.Time
	Client Client
	// TokenID identifies the token the request presented (resolver.TokenID);
	// "" when it presented none.
	TokenID string
	// Status and Reason are what the client was answered.
	Status int
	Reason string
	// Target is the console refused (unreachable, its handshake failed,
	// not servable); zero when the request was refused before one was
	// known, or when its address must not be shown (it holds the token).
	Target TargetInfo
}

// Outcomes of a session's start (Session.StartOutcome) and end
// (Session.Outcome): bounded sets, fit for metric labels.
const (
	StartOK     = "ok"     // the session passes bytes
	StartFailed = "failed" // the upgrade or the viewer's handshake failed

	EndClosed = "closed" // the viewer or the console closed it
	EndError  = "error"  // a connection failed
	EndKilled = "killed" // ended by the proxy: Shutdown, EndSessions or KillSession
)

// Killers: who ended a session that neither side closed (Session.KilledBy).
const (
	KilledByShutdown = "shutdown"      // Shutdown's drain period ran out
	KilledByRevoke   = "token revoked" // EndSessions
)

// Session is one websocket connection to a console, from its start to its
// end. The proxy fills the start fields before SessionStart and the end
// fields before SessionEnd.
type Session struct {
	// ID tells the proxy's sessions apart (random, 16 hex digits); the
	// proxy's log lines of the session carry it as "id".
	ID      string
	Time    time.Time // when the session started passing bytes
	Client  Client
	TokenID string // resolver.TokenID of the token; never the token
	Target  TargetInfo
	Info    protocols.Info // what the console handshake learnt
	// Role is what the viewer may do: the token's role, or less if the
	// viewer asked for less (RequestedRole).
	Role protocols.Role
	// Setup is how long the request took from arrival to the session's
	// start: resolving, dialling and both handshakes.
	Setup time.Duration
	// StartErr is why the session failed after the upgrade; nil when it
	// started.
	StartErr error

	// BytesToConsole and BytesFromConsole count the bytes passed so far;
	// they grow while the session runs.
	BytesToConsole, BytesFromConsole atomic.Int64

	// Set at the end.
	Duration time.Duration
	Outcome  string // EndClosed, EndError or EndKilled
	Reason   string // one line: why it ended (or, with StartErr, failed)
	KilledBy string // with EndKilled: KilledByShutdown, KilledByRevoke, KilledByGrantExpiry, KilledBySharedEnd or KillSession's by

	// Recording is the session's recording (Recording.Name: its file);
	// "" when it is not recorded. NotRecorded says why a session whose
	// policy is RecordOn is not ("" otherwise).
	Recording, NotRecorded string

	// Grant is the share link that admitted the session (its claims);
	// nil when a token did. TokenID is then the shared console's token ID.
	Grant *GrantInfo

	target protocols.Target // the console, for session shares to join
}

// StartOutcome is StartOK or StartFailed.
func (s *Session) StartOutcome() string {
	if s.StartErr != nil {
		return StartFailed
	}
	return StartOK
}

// TargetInfo is what an Observer may know of a session's console: the
// target without its password and dialler.
type TargetInfo struct {
	Kind               protocols.Kind
	Address            string
	Domain, DomainUUID string                 // when the resolver knows them
	Record             protocols.RecordPolicy // the console's own recording policy, if any
}

func targetInfo(t protocols.Target) TargetInfo {
	return TargetInfo{Kind: t.Kind, Address: t.Address, Domain: t.Domain, DomainUUID: t.DomainUUID, Record: t.Record}
}

// observer returns p.Observer, or one that does nothing.
func (p *Proxy) observer() Observer {
	if p.Observer != nil {
		return p.Observer
	}
	return Observers(nil)
}

// client describes r's client.
func (p *Proxy) client(r *http.Request) Client {
	c := Client{Addr: r.RemoteAddr, ForwardedFor: p.forwardedFor(r)}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		c.CertSubject = r.TLS.PeerCertificates[0].Subject.String()
	}
	return c
}

// tokenID is resolver.TokenID, or "" for no token.
func tokenID(token string) string {
	if token == "" {
		return ""
	}
	return resolver.TokenID(token)
}

// newSessionID returns 16 random hex digits.
func newSessionID() string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand's documented contract)
	return hex.EncodeToString(b[:])
}
