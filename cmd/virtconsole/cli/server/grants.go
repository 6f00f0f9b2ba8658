package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/grant"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/proxy/audit"
)

// The admin API's share links (--grant-key):
//
//	POST /v1/grants  201, a GrantResponse; 400 a bad request; 404 no --grant-key
//
// The body is a GrantRequest; the grant's minter ("by") is the admin
// certificate's CN, and the audit log records grant_minted.

// GrantRequest is the body of POST /v1/grants: a console (its token's
// resolver.TokenID, or a domain, a console kind and index) or a live
// session, a role and a TTL ("15m").
type GrantRequest struct {
	Console string         `json:"console,omitempty"`
	Domain  string         `json:"domain,omitempty"` // with kind and index: a libvirt domain's console
	Kind    protocols.Kind `json:"kind,omitempty"`
	Index   int            `json:"index,omitempty"`
	Session string         `json:"session,omitempty"`
	Role    protocols.Role `json:"role"`
	TTL     string         `json:"ttl"`
}

// GrantResponse is the answer of POST /v1/grants.
type GrantResponse struct {
	Grant   string    `json:"grant"`
	JTI     string    `json:"jti"`
	Expires time.Time `json:"expires"`
}

// granter mints grants for the admin API; nil means the proxy has no key.
type granter struct {
	key   *grant.Key
	audit *audit.Log // nil: no audit log
}

// mint serves POST /v1/grants for the administrator admin.
func (g *granter) mint(w http.ResponseWriter, r *http.Request, admin string, log *slog.Logger) {
	if g == nil {
		http.Error(w, "this proxy mints no share links: start it with --grant-key FILE", http.StatusNotFound)
		return
	}
	var req GrantRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		http.Error(w, "a grant request is JSON: {\"console\", \"domain\" with \"kind\" and \"index\", or \"session\"; \"role\", \"ttl\"}", http.StatusBadRequest)
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		http.Error(w, fmt.Sprintf("ttl %q must be a duration like \"15m\"", req.TTL), http.StatusBadRequest)
		return
	}
	tok, c, err := g.key.Mint(grant.Claims{Console: req.Console, Domain: req.Domain, Kind: req.Kind, Index: req.Index,
		Session: req.Session, Role: req.Role, By: admin}, time.Now(), ttl)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	info := proxy.NewGrantInfo(c)
	if g.audit != nil {
		g.audit.Write(&audit.Event{Time: time.Now(), Event: audit.GrantMinted, Client: r.RemoteAddr,
			ClientCert: r.TLS.PeerCertificates[0].Subject.String(), TokenID: c.Console, Role: string(c.Role), Grant: audit.GrantEvent(info)})
	}
	log.Info("share link minted", "grant", c.JTI, "admin", admin, "role", c.Role, "console", c.Console, "domain", c.Domain,
		"session", c.Session, "expires", c.Expiry().UTC())
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(GrantResponse{Grant: tok, JTI: c.JTI, Expires: c.Expiry().UTC()})
}
