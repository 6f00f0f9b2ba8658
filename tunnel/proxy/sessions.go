package proxy

import (
	"cmp"
	"slices"
	"time"
)

// SessionInfo is a snapshot of one live session, as Sessions lists it
// (and the admin API's GET /v1/sessions answers it as JSON). Like
// Session, it never holds the token or a password.
type SessionInfo struct {
	ID         string `json:"id"`   // Session.ID, KillSession's argument
	Kind       string `json:"kind"` // vnc, spice, serial, console
	Domain     string `json:"domain,omitempty"`
	DomainUUID string `json:"domain_uuid,omitempty"`
	Console    string `json:"console"` // the console's address
	Client     string `json:"client"`  // the viewer's address as the listener saw it
	// ForwardedFor and ClientCert as in Client, when known.
	ForwardedFor string    `json:"forwarded_for,omitempty"`
	ClientCert   string    `json:"client_cert,omitempty"`
	Started      time.Time `json:"started"`
	// BytesToConsole and BytesFromConsole are the bytes passed so far.
	BytesToConsole   int64 `json:"bytes_to_console"`
	BytesFromConsole int64 `json:"bytes_from_console"`
	// Viewers is the number of websocket connections of the session: 1,
	// as each SPICE channel is a session of its own here (SPICESession
	// tells the channels of one SPICE session).
	Viewers      int    `json:"viewers"`
	SPICESession string `json:"spice_session,omitempty"`
	Channel      string `json:"channel,omitempty"` // SPICE: the connection's channel
}

// Sessions returns a snapshot of the sessions passing bytes now, oldest
// first. Sessions still opening (resolving, dialling, handshaking) are
// not listed: they have no ID yet that KillSession could end.
func (p *Proxy) Sessions() []SessionInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := make([]SessionInfo, 0, len(p.requests))
	for req := range p.requests {
		s := req.sess
		if s == nil {
			continue
		}
		list = append(list, SessionInfo{
			ID: s.ID, Kind: string(s.Target.Kind), Domain: s.Target.Domain, DomainUUID: s.Target.DomainUUID,
			Console: s.Target.Address, Client: s.Client.Addr, ForwardedFor: s.Client.ForwardedFor,
			ClientCert: s.Client.CertSubject, Started: s.Time,
			BytesToConsole: s.BytesToConsole.Load(), BytesFromConsole: s.BytesFromConsole.Load(),
			Viewers: 1, SPICESession: s.Info.Session, Channel: s.Info.Channel,
		})
	}
	slices.SortFunc(list, func(a, b SessionInfo) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return list
}

// KillSession ends the live session id as EndSessions would, and reports
// whether there was one. by says who ended it, e.g. "admin alice": it is
// the Session's KilledBy (the audit log's killed_by) and the log's
// ended_by. The viewer's websocket is closed with 4002 (wsconn.
// CloseEndedByAdmin) and the reason "session ended by an administrator".
// It does not wait for the session to end.
func (p *Proxy) KillSession(id, by string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for req := range p.requests {
		if req.sess != nil && req.sess.ID == id && req.ctx.Err() == nil {
			req.killedBy = by
			req.cancel()
			return true
		}
	}
	return false
}
