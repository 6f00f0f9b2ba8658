// Package proxy is the websocket console proxy: an http.Handler that takes
// a token from the request, asks a Resolver which console it opens, dials
// QEMU and runs the console protocol's handshake toward it, and only then
// accepts the websocket and passes bytes through.
//
// Doing everything that can fail before the upgrade lets every failure be
// a real HTTP status with a one-line reason (401 no token, 403 origin,
// 404 unknown token, 429 too many failures, 502 console unreachable or
// its handshake failed, 503 resolver unavailable), which browsers, the
// virtconsole client and load balancers all understand.
//
// Like httputil.ReverseProxy, Proxy is one struct whose optional hooks
// have sensible nil defaults.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Proxy is an http.Handler serving console websockets. The zero value is
// not usable: Resolver is required.
type Proxy struct {
	// Resolver maps a request's token to a console. Required.
	Resolver resolver.Resolver

	// Dialer dials QEMU. Nil means a net.Dialer.
	Dialer tunnel.Dialer

	// TLSConfig returns the client TLS configuration (CA, client
	// certificate, policy) for QEMU at host. Nil means the proxy has no
	// TLS credentials toward QEMU, so only insecure targets can be served.
	TLSConfig func(host string) *tls.Config

	// ExplainTLS, if set, turns a TLS failure toward QEMU into an error
	// that says what to do (e.g. which CA to use). Nil keeps it as is.
	ExplainTLS func(err error, peer string) error

	// AllowInsecureTargets lets the proxy talk cleartext to targets the
	// resolver marks insecure (--connect-insecure). Without it such
	// targets are refused: the resolver alone cannot downgrade security.
	AllowInsecureTargets bool

	// Handshaker returns the handshaker for a console kind. Nil means
	// protocols.PassThrough for serial and console, and an error for
	// kinds without one.
	Handshaker func(protocols.Kind) (protocols.Handshaker, error)

	// Sessions, if set, groups connections into sessions for protocols
	// whose sessions span several connections (SPICE: one per channel).
	// See SessionManager.
	Sessions SessionManager

	// CheckOrigin reports whether a request's Origin may open a session.
	// Nil means: no Origin header (non-browser clients), an Origin whose
	// host is the request's Host, or one listed in AllowedOrigins.
	CheckOrigin func(*http.Request) bool

	// TrustForwarded honours X-Forwarded-Host (for the Origin check) and
	// X-Forwarded-For (for the refused-token limit) from a front proxy.
	// Leave it off unless every request comes through such a proxy:
	// clients can set these headers themselves.
	TrustForwarded bool

	// AllowedOrigins are origins (scheme://host[:port]) accepted by the
	// default CheckOrigin besides the request's own host.
	AllowedOrigins []string

	// HandshakeTimeout bounds resolving, dialling and both handshakes.
	// Zero means 15 seconds.
	HandshakeTimeout time.Duration

	// KeepAlive and DeadPeerTimeout tune the websocket ping/pong; zero
	// means wsconn's defaults.
	KeepAlive, DeadPeerTimeout time.Duration

	// Limiter, if set, is consulted before resolving and told of each
	// refused token, so that guessing tokens costs the guesser (429).
	Limiter *Limiter

	// MaxSessions bounds the sessions open or opening at once; beyond it
	// requests get 503. Zero means no bound.
	MaxSessions int

	// Logger receives one line per session start and end, and one per
	// refused request. Nil means slog.Default(). Tokens are never logged.
	Logger *slog.Logger

	inflight atomic.Int64 // requests past the checks, until they end

	mu       sync.Mutex
	sessions map[*session]struct{}
	wg       sync.WaitGroup
	closing  bool
}

type session struct {
	cancel context.CancelFunc
}

// SessionManager follows sessions made of several connections, such as
// SPICE's (*spice.Sessions implements it).
type SessionManager interface {
	// Join returns the target of a live session that token opened. The
	// connection then joins it without resolving (or consuming) the token
	// again.
	Join(token string) (protocols.Target, bool)
	// Handshaker returns the handshaker for one connection of token to t
	// and the function to call when that connection ends, or a nil
	// handshaker when t is not its protocol.
	Handshaker(t protocols.Target, token string, singleUse bool) (hs protocols.Handshaker, release func(), err error)
}

// httpError is a failure before the upgrade: a status and a one-line
// reason for the client.
type httpError struct {
	status int
	reason string
	err    error // for the log; may carry more detail than reason
}

func (e *httpError) Error() string { return e.reason }

func fail(status int, err error, format string, args ...any) *httpError {
	return &httpError{status: status, reason: fmt.Sprintf(format, args...), err: err}
}

func (p *Proxy) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// ServeHTTP serves one console session.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	peer := r.RemoteAddr
	log := p.logger().With("peer", peer)

	if !isUpgrade(r) {
		writeError(w, log, fail(http.StatusBadRequest, nil, "a websocket upgrade is required at this endpoint"))
		return
	}
	if !p.checkOrigin(r) {
		writeError(w, log, fail(http.StatusForbidden, nil, "origin %q is not allowed; add it with --allowed-origin", r.Header.Get("Origin")))
		return
	}
	if !p.acceptingSessions() {
		writeError(w, log, fail(http.StatusServiceUnavailable, nil, "proxy is shutting down"))
		return
	}
	host := clientHost(peer)
	if fwd := r.Header.Get("X-Forwarded-For"); p.TrustForwarded && fwd != "" {
		// The first address is the client's, as the front proxy saw it.
		host = strings.TrimSpace(strings.Split(fwd, ",")[0])
		log = log.With("forwarded_for", host)
	}
	if p.Limiter != nil && !p.Limiter.Allow(host) {
		writeError(w, log, fail(http.StatusTooManyRequests, nil, "too many refused tokens from %s; try again later", host))
		return
	}
	if n := p.inflight.Add(1); p.MaxSessions > 0 && n > int64(p.MaxSessions) {
		p.inflight.Add(-1)
		writeError(w, log, fail(http.StatusServiceUnavailable, nil, "too many sessions (%d); try again later", p.MaxSessions))
		return
	}
	defer p.inflight.Add(-1)
	token := Token(r)
	if token == "" {
		p.refused(host)
		writeError(w, log, fail(http.StatusUnauthorized, nil, "no token: send Authorization: Bearer, a token cookie or a token query parameter"))
		return
	}

	timeout := p.HandshakeTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	target, server, hs, info, herr := p.open(ctx, token)
	if herr != nil {
		if herr.status == http.StatusNotFound {
			p.refused(host)
		}
		writeError(w, log, herr)
		return
	}
	defer release(hs)
	log = log.With("kind", target.Kind, "console", target.Address)

	client, err := wsconn.Upgrade(w, r, &wsconn.Options{
		Subprotocols:    []string{"binary"},
		CheckOrigin:     func(*http.Request) bool { return true }, // checked above
		KeepAlive:       p.KeepAlive,
		DeadPeerTimeout: p.DeadPeerTimeout,
	})
	if err != nil {
		server.Close()
		log.Warn("websocket upgrade failed", "err", err)
		return // Upgrade has answered the request.
	}
	ws, qemu := client, server
	client, server, err = hs.Client(ctx, ws, qemu)
	if err != nil {
		ws.Close()
		qemu.Close()
		log.Warn("console handshake with client failed", "err", err)
		return
	}
	cancel()

	sctx, scancel := context.WithCancel(context.WithoutCancel(r.Context()))
	s := &session{cancel: scancel}
	if !p.track(s) {
		scancel()
		client.Close()
		server.Close()
		return
	}
	defer p.untrack(s)
	defer scancel()

	if d, ok := hs.(protocols.Describer); ok {
		more := d.Describe()
		if more.Session != "" {
			info.Session = more.Session
		}
		info.Channel = more.Channel
	}
	attrs := []any{"auth", info.Auth, "setup", time.Since(start).Round(time.Microsecond)}
	if info.Session != "" {
		log = log.With("session", info.Session)
	}
	if info.Channel != "" {
		log = log.With("channel", info.Channel)
	}
	log.Info("session start", attrs...)
	began := time.Now()
	stats, err := tunnel.Join(sctx, client, server)
	end := []any{"duration", time.Since(began).Round(time.Millisecond),
		"bytes_to_console", stats.AToB, "bytes_from_console", stats.BToA}
	if err != nil && sctx.Err() == nil {
		end = append(end, "err", err)
	}
	log.Info("session end", end...)
}

// open resolves token, dials the console and runs the QEMU-side
// handshake. On success the caller owns server.
func (p *Proxy) open(ctx context.Context, token string) (protocols.Target, net.Conn, protocols.Handshaker, protocols.Info, *httpError) {
	var none protocols.Target
	if p.Sessions != nil {
		if target, ok := p.Sessions.Join(token); ok {
			return p.dial(ctx, target, token, false)
		}
	}
	target, err := p.Resolver.Resolve(ctx, token)
	switch {
	case errors.Is(err, resolver.ErrNotFound):
		return none, nil, nil, protocols.Info{}, fail(http.StatusNotFound, err, "unknown token")
	case errors.Is(err, resolver.ErrUnavailable):
		return none, nil, nil, protocols.Info{}, fail(http.StatusServiceUnavailable, err, "token resolver unavailable; try again later")
	case errors.Is(err, resolver.ErrUnsupported):
		return none, nil, nil, protocols.Info{}, fail(http.StatusBadGateway, err, "%s", oneLine(err))
	case err != nil:
		return none, nil, nil, protocols.Info{}, fail(http.StatusBadGateway, err, "token resolver failed")
	}
	singleUse := false
	if su, ok := p.Resolver.(resolver.SingleUser); ok && su.SingleUse() {
		// Retire the token before any byte reaches QEMU: of racing
		// connections with one token exactly one gets this far.
		if err := su.Consume(ctx, token); err != nil {
			if errors.Is(err, resolver.ErrNotFound) {
				return none, nil, nil, protocols.Info{}, fail(http.StatusNotFound, err, "unknown token")
			}
			return none, nil, nil, protocols.Info{}, fail(http.StatusServiceUnavailable, err, "token resolver unavailable; try again later")
		}
		singleUse = true
	}
	return p.dial(ctx, target, token, singleUse)
}

// dial connects to target and runs the QEMU-side handshake. On success
// the caller owns server and must call the handshaker's release (see
// release) when the connection ends.
func (p *Proxy) dial(ctx context.Context, target protocols.Target, token string, singleUse bool) (protocols.Target, net.Conn, protocols.Handshaker, protocols.Info, *httpError) {
	var none protocols.Target
	var hs protocols.Handshaker
	var err error
	if p.Sessions != nil {
		var release func()
		hs, release, err = p.Sessions.Handshaker(target, token, singleUse)
		if err == nil && hs != nil {
			hs = releasing{hs, release}
		}
	}
	if hs == nil && err == nil {
		hs, err = p.handshaker(target.Kind)
	}
	if err != nil {
		return none, nil, nil, protocols.Info{}, fail(http.StatusBadGateway, err, "console type %s is not supported by this proxy", target.Kind)
	}
	server, info, herr := p.connect(ctx, target, hs)
	if herr != nil {
		release(hs)
		return none, nil, nil, protocols.Info{}, herr
	}
	return target, server, hs, info, nil
}

// connect dials target (with TLS where it wants it) and runs hs.Server.
func (p *Proxy) connect(ctx context.Context, target protocols.Target, hs protocols.Handshaker) (net.Conn, protocols.Info, *httpError) {
	var err error
	d := p.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	if target.Dial != nil || (target.Network != "" && target.Network != "tcp") {
		// A transport of its own (libvirt's console stream), as secure as
		// the connection it runs over.
		dial := target.Dial
		if dial == nil {
			dial = func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, target.Network, target.Address) }
		}
		server, err := dial(ctx)
		if err != nil {
			return nil, protocols.Info{}, fail(http.StatusBadGateway, err, "console unreachable: %s", oneLine(err))
		}
		return p.serverHandshake(ctx, hs, server, target)
	}
	if target.Insecure && !target.TLSTunnel && !p.AllowInsecureTargets {
		return nil, protocols.Info{}, fail(http.StatusBadGateway, nil,
			"console %s is marked insecure but the proxy refuses cleartext to QEMU; start it with --connect-insecure to allow", target.Address)
	}
	var cfg *tls.Config
	if !target.Insecure || target.TLSTunnel {
		if p.TLSConfig == nil {
			return nil, protocols.Info{}, fail(http.StatusBadGateway, nil,
				"console %s needs TLS but the proxy has no client credentials; start it with --connect-tls-dir", target.Address)
		}
		cfg = p.TLSConfig(target.Host())
	}
	server, err := tunnel.DialTarget(ctx, d, target, cfg)
	if err != nil {
		return nil, protocols.Info{}, fail(http.StatusBadGateway, err, "console %s unreachable: %s", target.Address, oneLine(p.explain(err, target)))
	}
	return p.serverHandshake(ctx, hs, server, target)
}

// serverHandshake runs the QEMU-side handshake on a dialled conn.
func (p *Proxy) serverHandshake(ctx context.Context, hs protocols.Handshaker, raw net.Conn, target protocols.Target) (net.Conn, protocols.Info, *httpError) {
	server, info, err := hs.Server(ctx, raw, target)
	if err != nil {
		raw.Close()
		err = p.explain(err, target)
		return nil, protocols.Info{}, fail(http.StatusBadGateway, err, "console %s handshake failed: %s", target.Address, oneLine(err))
	}
	return server, info, nil
}

// releasing is a handshaker from a SessionManager with the function to
// call when its connection ends.
type releasing struct {
	protocols.Handshaker
	release func()
}

// Describe passes the inner handshaker's description on.
func (r releasing) Describe() protocols.Info {
	if d, ok := r.Handshaker.(protocols.Describer); ok {
		return d.Describe()
	}
	return protocols.Info{}
}

// release ends a SessionManager handshaker's connection, if hs is one.
func release(hs protocols.Handshaker) {
	if r, ok := hs.(releasing); ok && r.release != nil {
		r.release()
	}
}

func (p *Proxy) explain(err error, t protocols.Target) error {
	if p.ExplainTLS == nil {
		return err
	}
	return p.ExplainTLS(err, "QEMU at "+t.Address)
}

func (p *Proxy) handshaker(k protocols.Kind) (protocols.Handshaker, error) {
	if p.Handshaker != nil {
		return p.Handshaker(k)
	}
	if k.IsText() {
		return protocols.PassThrough{}, nil
	}
	return nil, fmt.Errorf("no handshaker for %s", k)
}

func (p *Proxy) refused(host string) {
	if p.Limiter != nil {
		p.Limiter.Failed(host)
	}
}

func (p *Proxy) acceptingSessions() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closing
}

func (p *Proxy) track(s *session) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return false
	}
	if p.sessions == nil {
		p.sessions = make(map[*session]struct{})
	}
	p.sessions[s] = struct{}{}
	p.wg.Add(1)
	return true
}

func (p *Proxy) untrack(s *session) {
	p.mu.Lock()
	delete(p.sessions, s)
	p.mu.Unlock()
	p.wg.Done()
}

// Active returns the number of sessions passing bytes now.
func (p *Proxy) Active() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}

// Shutdown refuses new sessions and waits for the running ones to end.
// When ctx ends first it closes them and returns ctx's error once they
// have finished. Call it after http.Server.Shutdown, which does not wait
// for hijacked (websocket) connections.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	for s := range p.sessions {
		s.cancel()
	}
	p.mu.Unlock()
	<-done
	return ctx.Err()
}

// Token returns the request's token: from an "Authorization: Bearer"
// header (the CLI's way: keeps tokens out of URLs and access logs), a
// "token" cookie, or a "token" query parameter (noVNC, spice-html5).
func Token(r *http.Request) string {
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

func clientHost(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	return host
}

func writeError(w http.ResponseWriter, log *slog.Logger, e *httpError) {
	attrs := []any{"status", e.status, "reason", e.reason}
	if e.err != nil && e.err.Error() != e.reason {
		attrs = append(attrs, "err", e.err)
	}
	log.Warn("request refused", attrs...)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.status)
	fmt.Fprintln(w, e.reason)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
