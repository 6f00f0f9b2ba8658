package proxy

import (
	"cmp"
	"slices"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// SessionInfo is a snapshot of one live session, as Sessions lists it
// (and the admin API's GET /v1/sessions answers it as JSON). Like
// Session, it never holds the token or a password.
type SessionInfo struct {
	// ID is KillSession's argument: the Session.ID of the session's
	// websocket, or of a SPICE session's oldest one (its main channel).
	ID         string `json:"id"`
	Kind       string `json:"kind"` // vnc, spice, serial, console
	Domain     string `json:"domain,omitempty"`
	DomainUUID string `json:"domain_uuid,omitempty"`
	Console    string `json:"console"` // the console's address
	Client     string `json:"client"`  // the viewer's address as the listener saw it
	// ForwardedFor and ClientCert as in Client, when known.
	ForwardedFor string    `json:"forwarded_for,omitempty"`
	ClientCert   string    `json:"client_cert,omitempty"`
	Started      time.Time `json:"started"`
	// BytesToConsole and BytesFromConsole are the bytes passed so far
	// (by all of a SPICE session's channels).
	BytesToConsole   int64 `json:"bytes_to_console"`
	BytesFromConsole int64 `json:"bytes_from_console"`
	// Viewers is the number of websocket connections of the session: 1,
	// a SPICE session's channels, or the viewers sharing a text console.
	Viewers int `json:"viewers"`
	// Connections are those websocket connections, oldest first, each
	// with its viewer's role.
	Connections []Connection `json:"connections"`
	// SPICESession is the proxy's name of a SPICE session (the log's
	// "session").
	SPICESession string `json:"spice_session,omitempty"`
}

// Connection is one websocket connection of a listed session.
type Connection struct {
	ID      string         `json:"id"` // its Session.ID
	Client  string         `json:"client"`
	Role    protocols.Role `json:"role"`
	Channel string         `json:"channel,omitempty"` // a SPICE channel
	Started time.Time      `json:"started"`
}

// Sessions returns a snapshot of the sessions passing bytes now, oldest
// first; the channels of a SPICE session are one session, whose Viewers
// counts them. Sessions still opening (resolving, dialling,
// handshaking) are not listed: KillSession could not end them by ID.
func (p *Proxy) Sessions() []SessionInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	byKey := make(map[string]*SessionInfo)
	var list []*SessionInfo
	for req := range p.requests {
		s := req.sess
		if s == nil {
			continue
		}
		info := &SessionInfo{
			ID: s.ID, Kind: string(s.Target.Kind), Domain: s.Target.Domain, DomainUUID: s.Target.DomainUUID,
			Console: s.Target.Address, Client: s.Client.Addr, ForwardedFor: s.Client.ForwardedFor,
			ClientCert: s.Client.CertSubject, Started: s.Time,
			BytesToConsole: s.BytesToConsole.Load(), BytesFromConsole: s.BytesFromConsole.Load(),
			Viewers:     1,
			Connections: []Connection{{ID: s.ID, Client: s.Client.Addr, Role: s.Role, Channel: s.Info.Channel, Started: s.Time}},
		}
		if s.Target.Kind == protocols.KindSPICE {
			info.SPICESession = s.Info.Session
		}
		key := sessionKey(s)
		g := byKey[key]
		if g == nil {
			byKey[key] = info
			list = append(list, info)
			continue
		}
		// Another channel of g's SPICE session: the oldest names it.
		viewers, to, from := g.Viewers+1, g.BytesToConsole+info.BytesToConsole, g.BytesFromConsole+info.BytesFromConsole
		conns := append(g.Connections, info.Connections...)
		if info.Started.Before(g.Started) || (info.Started.Equal(g.Started) && info.ID < g.ID) {
			*g = *info
		}
		g.Viewers, g.BytesToConsole, g.BytesFromConsole, g.Connections = viewers, to, from, conns
	}
	out := make([]SessionInfo, len(list))
	for i, info := range list {
		slices.SortFunc(info.Connections, func(a, b Connection) int {
			return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
		})
		out[i] = *info
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		return cmp.Or(a.Started.Compare(b.Started), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// sessionKey tells Sessions' and KillSession's sessions apart: a SPICE
// session's channels share one, so do the viewers of a shared text
// console (its hub's Info.Session); every other websocket has its own.
func sessionKey(s *Session) string {
	if s.Info.Session != "" {
		return string(s.Target.Kind) + " " + s.Info.Session
	}
	return s.ID
}

// KillSession ends the live session id (from Sessions; for SPICE, the ID
// of any of its channels ends them all; for a shared text console, any
// viewer's ends every viewer's) as EndSessions would, and
// reports whether there was one. by says who ended it, e.g. "admin
// alice": it is the Session's KilledBy (the audit log's killed_by) and
// the log's ended_by. The viewer's websocket is closed with 4002
// (wsconn.CloseEndedByAdmin) and the reason "session ended by an
// administrator". It does not wait for the session to end.
func (p *Proxy) KillSession(id, by string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := ""
	for req := range p.requests {
		if req.sess != nil && req.sess.ID == id && req.ctx.Err() == nil {
			key = sessionKey(req.sess)
			break
		}
	}
	if key == "" {
		return false
	}
	for req := range p.requests {
		if req.sess != nil && sessionKey(req.sess) == key && req.ctx.Err() == nil {
			req.killedBy = by
			req.cancel()
		}
	}
	return true
}
