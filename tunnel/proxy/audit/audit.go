// Package audit writes the console proxy's audit log: who opened which
// console, when, for how long, and who was refused, as one JSON object
// per line, apart from the operational log, for people (and tools) that
// must answer those questions later. A *Log is a proxy.Observer.
//
// Each line is an Event. Its "event" is one of
//
//	session_start   a session started (outcome "ok"), or failed after the
//	                websocket upgrade (outcome "failed", with the reason)
//	session_end     a session ended: duration, bytes each way, outcome and reason
//	session_killed  the proxy ended a session (killed_by "shutdown",
//	                "token revoked", "admin NAME" for the sessions API,
//	                or for a share link's viewer "grant expired" or
//	                "shared session has ended"); its session_end follows
//	refusal         a request refused before the upgrade: HTTP status and reason
//	grant_minted    a share link was minted through the admin API (grant:
//	                its ID, who minted it, its role, console or session
//	                and expiry)
//
// The session events of a session opened with a share link carry
// "grant": its ID (jti), who minted it (by), its role, and the console
// (token ID) or session it shares; never the grant itself.
//
// No line holds a token or a password: a token appears as its token_id,
// the first 12 hex digits of its SHA-256 (resolver.TokenID).
//
// The file is opened append-only and created 0600; Reopen opens it again
// by name, which is what logrotate expects after renaming it (SIGHUP).
package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// Event names.
const (
	SessionStart  = "session_start"
	SessionEnd    = "session_end"
	SessionKilled = "session_killed"
	Refusal       = "refusal"
	GrantMinted   = "grant_minted"
)

// Event is one line of the audit log. Fields that do not apply to an
// event, or are not known, are left out.
type Event struct {
	Time  time.Time `json:"time"` // UTC
	Event string    `json:"event"`

	SessionID  string `json:"session_id,omitempty"`
	Kind       string `json:"kind,omitempty"`        // console kind: vnc, spice, serial, console
	Domain     string `json:"domain,omitempty"`      // the domain's name, when the resolver knows it
	DomainUUID string `json:"domain_uuid,omitempty"` // and its UUID
	Console    string `json:"console,omitempty"`     // the console's address
	Channel    string `json:"channel,omitempty"`     // SPICE: the connection's channel
	Role       string `json:"role,omitempty"`        // the viewer's: control or view

	Client       string `json:"client"`                  // the peer's address
	ForwardedFor string `json:"forwarded_for,omitempty"` // X-Forwarded-For's client, when trusted
	ClientCert   string `json:"client_cert,omitempty"`   // the client certificate's subject (mutual TLS)
	TokenID      string `json:"token_id,omitempty"`      // resolver.TokenID of the token

	Outcome      string   `json:"outcome,omitempty"`       // session_start: ok, failed; session_end: closed, error, killed
	SetupSeconds *float64 `json:"setup_seconds,omitempty"` // session_start
	Status       int      `json:"status,omitempty"`        // refusal: the HTTP status
	Reason       string   `json:"reason,omitempty"`
	KilledBy     string   `json:"killed_by,omitempty"` // session_killed

	DurationSeconds  *float64 `json:"duration_seconds,omitempty"`   // session_end
	BytesToConsole   *int64   `json:"bytes_to_console,omitempty"`   // session_end
	BytesFromConsole *int64   `json:"bytes_from_console,omitempty"` // session_end

	Grant *Grant `json:"grant,omitempty"` // the share link that opened the session, or was minted

	Recording   string `json:"recording,omitempty"`    // session_start, session_end: the session's recording (its file)
	NotRecorded string `json:"not_recorded,omitempty"` // session_start, session_end: why a session to be recorded (record "on") is not
}

// Grant is what the audit log says of a share link: never the grant.
type Grant struct {
	JTI     string    `json:"jti"`
	By      string    `json:"by,omitempty"`
	Role    string    `json:"role"`
	Console string    `json:"console,omitempty"` // the console's token ID
	Domain  string    `json:"domain,omitempty"`  // or its domain, kind and number
	Kind    string    `json:"kind,omitempty"`
	Index   *int      `json:"index,omitempty"`
	Session string    `json:"session,omitempty"` // the shared session's ID
	Expires time.Time `json:"expires"`
}

// GrantEvent returns the audit record of g.
func GrantEvent(g *proxy.GrantInfo) *Grant {
	if g == nil {
		return nil
	}
	e := &Grant{JTI: g.JTI, By: g.By, Role: string(g.Role), Console: g.Console, Domain: g.Domain, Kind: string(g.Kind),
		Session: g.Session, Expires: g.Expires.UTC()}
	if g.Domain != "" {
		e.Index = ptr(g.Index)
	}
	return e
}

// Log is an audit log. Its methods are safe for concurrent use; each
// event is written with one write, so lines never interleave.
type Log struct {
	path   string // "" when w is not a file Log opened
	errLog *slog.Logger

	mu      sync.Mutex
	w       io.Writer
	f       *os.File // w, when Log opened it
	failing bool     // the last write failed (logged once until one succeeds)
}

// Open opens the audit log at path, "-" meaning standard output. Write
// failures are reported to errLog (nil: slog.Default()).
func Open(path string, errLog *slog.Logger) (*Log, error) {
	if errLog == nil {
		errLog = slog.Default()
	}
	if path == "-" {
		return &Log{w: os.Stdout, errLog: errLog}, nil
	}
	l := &Log{path: path, errLog: errLog}
	f, err := openFile(path)
	if err != nil {
		return nil, err
	}
	l.f, l.w = f, f
	return l, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w; check that its directory exists and is writable", err)
	}
	return f, nil
}

// Reopen opens the file again by its path and closes the old one, so
// that after logrotate has renamed it, events go to a new file. On
// failure the old file stays in use. Standard output is not reopened.
func (l *Log) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f, l.w = f, f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file (not standard output).
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f, l.w = nil, io.Discard
	return err
}

// Write appends e as one line.
func (l *Log) Write(e *Event) {
	e.Time = e.Time.UTC()
	b, err := json.Marshal(e)
	if err != nil {
		l.errLog.Error("audit event not written", "event", e.Event, "err", err)
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(b); err != nil {
		if !l.failing {
			l.errLog.Error("audit log write failed; events are being lost until it works again", "path", l.path, "err", err)
		}
		l.failing = true
		return
	}
	l.failing = false
}

// Refused implements proxy.Observer.
func (l *Log) Refused(r *proxy.Refusal) {
	e := &Event{Time: r.Time, Event: Refusal, TokenID: r.TokenID, Status: r.Status, Reason: r.Reason}
	setClient(e, r.Client)
	setTarget(e, r.Target)
	l.Write(e)
}

// SessionStart implements proxy.Observer.
func (l *Log) SessionStart(s *proxy.Session) {
	e := sessionEvent(s, SessionStart, s.Time)
	e.Outcome = s.StartOutcome()
	e.SetupSeconds = ptr(s.Setup.Seconds())
	if s.StartErr != nil {
		e.Reason = s.Reason
	}
	l.Write(e)
}

// SessionEnd implements proxy.Observer.
func (l *Log) SessionEnd(s *proxy.Session) {
	end := s.Time.Add(s.Duration)
	if s.KilledBy != "" {
		k := sessionEvent(s, SessionKilled, end)
		k.KilledBy = s.KilledBy
		l.Write(k)
	}
	e := sessionEvent(s, SessionEnd, end)
	e.Outcome, e.Reason = s.Outcome, s.Reason
	e.DurationSeconds = ptr(s.Duration.Seconds())
	e.BytesToConsole = ptr(s.BytesToConsole.Load())
	e.BytesFromConsole = ptr(s.BytesFromConsole.Load())
	l.Write(e)
}

// sessionEvent is the part of an event that every event of s has.
func sessionEvent(s *proxy.Session, name string, t time.Time) *Event {
	e := &Event{Time: t, Event: name, SessionID: s.ID, TokenID: s.TokenID, Channel: s.Info.Channel, Role: string(s.Role),
		Grant: GrantEvent(s.Grant), Recording: s.Recording, NotRecorded: s.NotRecorded}
	setClient(e, s.Client)
	setTarget(e, s.Target)
	return e
}

func setTarget(e *Event, t proxy.TargetInfo) {
	e.Kind, e.Console, e.Domain, e.DomainUUID = string(t.Kind), t.Address, t.Domain, t.DomainUUID
}

func setClient(e *Event, c proxy.Client) {
	e.Client, e.ForwardedFor, e.ClientCert = c.Addr, c.ForwardedFor, c.CertSubject
}

func ptr[T any](v T) *T { return &v }
