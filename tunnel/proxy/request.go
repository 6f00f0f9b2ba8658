package proxy

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/virtconsole/virtconsole/protocols"
)

// Token returns the request's token: from an "Authorization: Bearer"
// header (the CLI's way: keeps tokens out of URLs and access logs), a
// "token" cookie, or a "token" query parameter (noVNC, spice-html5). A
// CONNECT request (ConnectGateway) carries it only as the password of
// its Proxy-Authorization (ConnectToken).
func Token(r *http.Request) string {
	if r.Method == http.MethodConnect {
		return ConnectToken(r)
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if c, err := r.Cookie("token"); err == nil && c.Value != "" {
		return c.Value
	}
	return r.URL.Query().Get("token")
}

func (p *Proxy) checkOrigin(r *http.Request) bool {
	if p.CheckOrigin != nil {
		return p.CheckOrigin(r)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: browsers always send Origin on websockets
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); p.TrustForwarded && fh != "" {
		host = strings.TrimSpace(strings.Split(fh, ",")[0])
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	for _, a := range p.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(a, "/"), origin) {
			return true
		}
	}
	return false
}

func isUpgrade(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// clientAddr returns the request's client address: the peer's IP, or
// with TrustForwarded the first X-Forwarded-For address (the client's, as
// the front proxy saw it).
func (p *Proxy) clientAddr(r *http.Request) string {
	if fwd := p.forwardedFor(r); fwd != "" {
		return fwd
	}
	return clientHost(r.RemoteAddr)
}

// forwardedFor is, with TrustForwarded, the first X-Forwarded-For address
// (the client's, as the front proxy saw it); "" otherwise.
func (p *Proxy) forwardedFor(r *http.Request) string {
	if fwd := r.Header.Get("X-Forwarded-For"); p.TrustForwarded && fwd != "" {
		return strings.TrimSpace(strings.Split(fwd, ",")[0])
	}
	return ""
}

func clientHost(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

// RoleHeader is protocols.RoleHeader; browsers, which cannot set
// websocket headers, use a "role" query parameter or cookie instead.
const RoleHeader = protocols.RoleHeader

// RequestedRole returns the role the request asks for: RoleHeader, else
// a "role" query parameter, else a "role" cookie; RoleControl when none.
// It can only lower the token's role (Role.Least): a viewer may watch
// with a control token, never type with a view one.
func RequestedRole(r *http.Request) (protocols.Role, error) {
	s := r.Header.Get(RoleHeader)
	if s == "" {
		s = r.URL.Query().Get("role")
	}
	if s == "" {
		if c, err := r.Cookie("role"); err == nil {
			s = c.Value
		}
	}
	return protocols.ParseRole(s)
}
