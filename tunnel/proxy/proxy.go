// Package proxy is the websocket console proxy: an http.Handler that takes
// a token from the request, asks a Resolver which console it opens, dials
// QEMU and runs the console protocol's handshake toward it, and only then
// accepts the websocket and passes bytes through.
//
// Doing everything that can fail before the upgrade lets every failure be
// a real HTTP status with a one-line reason (400 or 405 not a well-formed
// websocket upgrade, 400 an unknown role, 401 no token, 403 origin, a
// refused share link (grant expired, signature invalid, role not allowed,
// shared session has ended) or a view-only SPICE session (the proxy cannot filter SPICE input), 404
// unknown token, 409 a second viewer of a live SPICE console (SPICE
// cannot be shared: QEMU 7.2 crashes on a second main channel), 429 too
// many failures, 502 console unreachable or its handshake failed, 503
// resolver unavailable, or a console that must be recorded cannot be),
// which browsers, the virtconsole client and load balancers all
// understand.
//
// A single-use token is spent only by a request that can open a session:
// the upgrade is checked before the token is looked at, and a token whose
// console cannot be reached or refuses the handshake is given back where
// the resolver can (resolver.Refunder; the libvirt resolver cannot).
//
// Like httputil.ReverseProxy, Proxy is one struct whose optional hooks
// have sensible nil defaults: Handshake chooses each connection's
// handshaker, ErrorHandler answers refused requests, Observer hears of
// every refusal and session (metrics and audit records come from it).
//
// After the upgrade a failure can only be told in the websocket's close
// frame: an RFC 6455 code (wsconn's constants) and a one-line reason.
// 1000 the session ended: the console closed its connection, or the
// viewer closed. 1001 going away, "proxy shutting down": Shutdown ended
// the session. 1011, "console closed unexpectedly: …": the console's
// connection failed (an error other than its end, such as a reset when
// QEMU is killed; a clean close cannot be told from QEMU quitting and is
// 1000). 4000, sent by wsconn: the viewer stopped answering, or reading.
// 4001, "console handshake failed: …": the console protocol's handshake
// with the viewer failed (e.g. no common VNC security type). 4002,
// "session ended by an administrator": KillSession ended it (the admin
// listener's DELETE /v1/sessions/{id}). 4003, "viewer too slow": a viewer
// of a shared text console left its output unread for ViewerStall with
// its queue full (wsconn.CloseViewerTooSlow).
//
// Roles: a token grants RoleControl or RoleView (protocols.Target.Role);
// a request may ask for less (RequestedRole), never more. The viewers of
// a text console (serial, console) share its one connection through a
// hub (hub.go): output to every viewer, input from control viewers only,
// a scrollback for late joiners, a bounded queue per viewer. The join
// key is the console, not the token. Each VNC viewer has its own
// connection, always shared (vnc.Input), its input dropped if view-only.
//
// The files: proxy.go (the struct, ServeHTTP, Shutdown), upstream.go
// (resolve, dial, QEMU-side handshake), handshake.go (the default
// handshaker table), errors.go (refusals), request.go (token, origin),
// limit.go (the refused-token limiter), session.go (how a session's end
// reaches the viewer), observer.go (the events an Observer receives),
// sessions.go (listing and ending live sessions), hub.go (shared text
// consoles), grants.go (share links: GrantKey), record.go (session
// recording: Recorder), connect.go (the SPICE CONNECT gateway:
// ConnectGateway, whose tunnels take the websocket's place),
// connectrelay.go (its passthrough mode), vvfile.go (.vv files for it).
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/grant"
	"github.com/virtconsole/virtconsole/tunnel/park"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// ParkIdle is how long a session's console side stays quiet before the
// session waits for it in Proxy.Parking: long enough that typing and a
// changing screen never park, short enough that an idle console soon
// gives its goroutine back.
const ParkIdle = time.Second

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

	// Handshake returns the handshaker for one connection to t, and
	// release, which the proxy calls once when that connection ends or
	// fails to open (nil: nothing to release). token is what the
	// connection presented, and singleUse whether opening it consumed the
	// token: protocols whose sessions span several connections admit the
	// later ones by them. The proxy calls it after resolving and before
	// dialling; t.Role is the session's role (the token's, or less if
	// the viewer asked for less), which the handshaker must enforce. An
	// error refuses the request with 502 "console type
	// <kind> is not supported by this proxy".
	//
	// Nil means DefaultHandshake, which serves serial, console, VNC and
	// SPICE targets. A hook that only adds to it (a recorder, a view-only
	// filter) can wrap what DefaultHandshake returns. With a hook, the
	// viewers of a text console do not share its connection (each gets
	// its own, as with NoSerialSharing): the hook sees every connection.
	Handshake func(ctx context.Context, t protocols.Target, token string, singleUse bool) (hs protocols.Handshaker, release func(), err error)

	// SPICE follows SPICE sessions across their connections (one per
	// channel): before resolving a token the proxy asks it whether the
	// token's session is live, and if so the connection joins it without
	// resolving the token again (a single-use token was consumed by the
	// session's first connection). DefaultHandshake takes SPICE
	// handshakers from it; a Handshake of one's own must too, or later
	// channels cannot join. Nil means one of the proxy's own with spice's
	// defaults.
	SPICE *spice.Sessions

	// ErrorHandler answers a request refused before the websocket
	// upgrade. err is a *Error: its Status and one-line Reason (safe to
	// show; never the token), and the cause behind it (errors.Is/As). The
	// proxy has already logged the refusal ("request refused") and counted
	// it for the Limiter.
	//
	// Nil means: Status, and Reason as a one-line text/plain body, which
	// is what wsconn.Dial reports as HandshakeError.Reason and what a
	// browser's network panel shows. Failures after the upgrade cannot be
	// answered over HTTP: they are logged and the websocket is closed.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)

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
	// means wsconn's defaults. DeadPeerTimeout also bounds each write
	// toward the viewer (wsconn's WriteTimeout), so that a viewer that
	// pings but never reads cannot hold its session and the console.
	KeepAlive, DeadPeerTimeout time.Duration

	// Limiter, if set, is told of each refused token; an address past
	// its limit gets 429 for refused tokens but a valid one still opens
	// its session (clients behind one NAT share the address).
	Limiter *Limiter

	// MaxSessions bounds the sessions open or opening at once; beyond it
	// requests get 503. Zero means no bound.
	MaxSessions int

	// MaxSessionsPerToken and MaxSessionsPerClient are one token's and
	// one client address's share of them (each SPICE channel counts):
	// beyond it that token or address gets 503. Zero means no bound.
	MaxSessionsPerToken, MaxSessionsPerClient int

	// Logger receives one line per session start and end, and one per
	// refused request. Nil means slog.Default(). Tokens are never logged.
	Logger *slog.Logger

	// Observer, if set, is told of every refused request and of every
	// session's start and end, with its setup time and its bytes as they
	// pass (see Observer). Nil means nobody is.
	Observer Observer

	// GrantKey, if set, admits share links (package grant): a token that
	// starts with grant.Prefix is verified with it (signature, expiry,
	// role) and opens the console or joins the live session it names,
	// with at most its role, until its expiry; a shared session's viewers
	// are ended when it ends. A bad grant is refused with 403 and its
	// reason, and counted for the Limiter like an unknown token. Nil
	// means grants are not accepted: one is just an unknown token.
	GrantKey *grant.Key

	// GrantConsole returns the console a grant names (its Console, a
	// token's ID, e.g. with resolver.Static.ResolveID; or its Domain,
	// Kind and Index, e.g. with the libvirt resolver's ResolveConsole),
	// or an error wrapping resolver.ErrNotFound. Nil means grants naming
	// a console are refused (403); grants naming a live session still
	// work.
	GrantConsole func(ctx context.Context, c *grant.Claims) (protocols.Target, error)

	// Recorder, if set, records sessions (see Recorder): their policy,
	// from the console's own (protocols.Target.Record) and the
	// recorder's defaults, says which. Nil means none is recorded, and a
	// console whose own policy is RecordRequired is refused (503).
	Recorder Recorder

	// NoSerialSharing gives each viewer of a text console (serial,
	// console) its own connection to it, as for a server that serves
	// many clients (QEMU's chardevs serve one). By default the viewers of
	// one console share its one connection (see hub.go).
	NoSerialSharing bool

	// Parking, if set, holds the console sides of idle sessions
	// (tunnel.WithParking): once a console on a plain socket has sent
	// nothing for ParkIdle, its session waits for it there rather than
	// on a goroutine of its own, so that an idle session holds one
	// goroutine instead of two. Its owner closes it after Shutdown
	// (Close wakes whatever still waits in it). Nil means each session
	// keeps two goroutines.
	Parking *park.Poller

	refusals sampler      // of "request refused" log lines, per client
	shares   shares       // sessions per token and per client
	hubs     hubs         // live shared text consoles
	inflight atomic.Int64 // requests past the checks, until they end
	active   atomic.Int64 // sessions passing bytes

	spiceOnce    sync.Once
	defaultSPICE *spice.Sessions

	mu       sync.Mutex
	requests map[*request]struct{} // every request Shutdown waits for
	wg       sync.WaitGroup        // counts requests
	closing  bool
}

// request is one ServeHTTP call that Shutdown waits for and can end.
type request struct {
	ctx    context.Context // ends when Shutdown gives up waiting, or EndSessions
	cancel context.CancelFunc
	token  string // what it presented, for EndSessions

	// Guarded by Proxy.mu.
	killedBy string   // who cancelled ctx (KilledBy*, or KillSession's by)
	sess     *Session // the session passing bytes; nil before and after
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
	log := p.logger().With("peer", r.RemoteAddr)

	if !isUpgrade(r) {
		p.refuse(w, r, log, fail(http.StatusBadRequest, nil, "a websocket upgrade is required at this endpoint"))
		return
	}
	if err := wsconn.CheckUpgrade(r); err != nil {
		// Before anything costly or irreversible: a request that cannot
		// be upgraded must not dial QEMU or spend a single-use token.
		var ue *wsconn.UpgradeError
		errors.As(err, &ue)
		p.refuse(w, r, log, fail(ue.Status, err, "%s", ue.Reason))
		return
	}
	if !p.checkOrigin(r) {
		p.refuse(w, r, log, fail(http.StatusForbidden, nil, "origin %q is not allowed; add it with --allowed-origin", r.Header.Get("Origin")))
		return
	}
	p.serve(w, r, log, start, p.accept, nil)
}

// acceptFunc brings the viewer's side of a request up once the console
// is open: a websocket upgrade (Proxy.accept) or a CONNECT tunnel
// (ConnectGateway.accept). Its contract is accept's.
type acceptFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, log *slog.Logger, up *upstream, sess *Session, arrived time.Time) (client, server net.Conn, ok bool)

// openFunc opens the console side of a request for token: Proxy.open,
// or a passthrough CONNECT gateway's relay (ConnectGateway.openRelay).
type openFunc func(ctx context.Context, token string, asked protocols.Role) (*upstream, *Error)

// serve is one session from a request whose transport checks have
// passed: limits, token, role, resolving, dialling and QEMU's side of the
// handshake, then accept for the viewer's side, then the bytes. open
// replaces Proxy.open if not nil; share links are Proxy.open's only.
//
// Once accept has taken the connection over (a hijack), the session's
// bytes pass on a goroutine of its own and serve returns: net/http's
// handler goroutine then ends, and with it its grown stack and its
// connection's read and write buffers, which an idle session would
// otherwise keep for its whole life. That goroutine is the request's:
// it holds the request's count in Proxy.wg (untrack is among its
// cleanups), so Shutdown waits for it as for any request.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, log *slog.Logger, start time.Time, accept acceptFunc, open openFunc) {
	req, ok := p.track(r)
	if !ok {
		p.refuse(w, r, log, fail(http.StatusServiceUnavailable, nil, "proxy is shutting down"))
		return
	}
	// The request's cleanups, run last first when it ends: when serve
	// returns before a session starts, else when the session ends.
	var cleanups []func()
	later := func(f func()) { cleanups = append(cleanups, f) }
	handedOff := false
	defer func() {
		if !handedOff {
			runCleanups(cleanups)
		}
	}()
	later(func() { p.untrack(req) })
	host := p.clientAddr(r)
	if fwd := p.forwardedFor(r); fwd != "" {
		log = log.With("forwarded_for", fwd)
	}
	if n := p.inflight.Add(1); p.MaxSessions > 0 && n > int64(p.MaxSessions) {
		p.inflight.Add(-1)
		p.refuse(w, r, log, fail(http.StatusServiceUnavailable, nil, "too many sessions (%d); try again later", p.MaxSessions))
		return
	}
	later(func() { p.inflight.Add(-1) })
	token := Token(r)
	if token == "" {
		p.refuse(w, r, log, p.refused(host, fail(http.StatusUnauthorized, nil, "no token: send Authorization: Bearer, a token cookie or a token query parameter")))
		return
	}
	asked, err := RequestedRole(r)
	if err != nil {
		p.refuse(w, r, log, fail(http.StatusBadRequest, err, "role must be control or view"))
		return
	}
	claims, herr := p.verifyGrant(req, token)
	if herr != nil {
		p.refuse(w, r, log, p.refused(host, herr))
		return
	}
	releaseShare, herr := p.takeShare(token, host)
	if herr != nil {
		p.refuse(w, r, log, herr)
		return
	}
	later(releaseShare)

	timeout := p.HandshakeTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	// From r's context: a viewer that hangs up ends its handshakes. It
	// is cancelled before the session starts, and only a refund (of a
	// session that did not start) uses it after that.
	hs := startHandshake(r.Context(), req.ctx, timeout)
	later(hs.end)
	ctx := hs.ctx

	var up *upstream
	var share *grantShare
	switch {
	case claims != nil && open != nil:
		herr = fail(http.StatusForbidden, nil, "share links are not served here (a passthrough SPICE CONNECT gateway cannot follow a shared session)")
	case claims != nil:
		up, share, herr = p.openGrant(ctx, claims, token, asked)
	case open != nil:
		up, herr = open(ctx, token, asked)
	default:
		up, herr = p.open(ctx, token, asked)
	}
	if herr != nil {
		if herr.Status == http.StatusNotFound || (claims != nil && herr.Status == http.StatusForbidden) {
			herr = p.refused(host, herr)
		}
		p.refuse(w, r, log, herr)
		return
	}
	started := false
	later(func() {
		up.release()
		if !started && up.consumed != "" {
			p.refund(hs.ctx, up.consumed) // after release: the SPICE session is gone
		}
	})
	sess := &Session{ID: newSessionID(), Client: p.client(r), TokenID: tokenID(token), Target: targetInfo(up.target), Info: up.info,
		Role: up.target.Role, target: up.target}
	log = log.With("id", sess.ID, "kind", up.target.Kind, "console", up.target.Address)
	if share != nil {
		later(p.bindGrant(req, share))
		sess.TokenID, sess.Grant = share.tokenID, share.info()
		log = log.With("grant", share.claims.JTI)
		if share.claims.Session != "" {
			log = log.With("shares", share.claims.Session)
		}
	}

	rec, herr := p.openRecording(sess, up.target, log)
	if herr != nil {
		p.refuse(w, r, log, herr)
		return
	}
	later(func() { closeRecording(&rec, sess, log) }) // a session that did not start
	if rec != nil {
		log = log.With("recording", rec.Name())
		steerRecorded(up.hs)
	}

	client, server, ok := accept(ctx, w, r, log, up, sess, start)
	if !ok {
		return
	}
	started = true
	hs.end()
	handedOff = true
	ps := &passing{p: p, req: req, log: log, up: up, client: client, server: server, sess: sess, arrived: start, rec: &rec, cleanups: cleanups}
	go p.pass(ps) // the request's: untrack, among the cleanups, ends it
}

// handshake is the context a session's opening runs under: from the
// viewer's request (a viewer that hangs up ends its handshakes), bounded
// by the handshake timeout, and ended by the request's own (Shutdown).
type handshake struct {
	ctx  context.Context
	stop func() // cancels ctx and stops watching the request's
}

func startHandshake(viewer, req context.Context, timeout time.Duration) *handshake {
	ctx, cancel := context.WithTimeout(viewer, timeout)
	stopWatch := context.AfterFunc(req, cancel)
	return &handshake{ctx: ctx, stop: func() { stopWatch(); cancel() }}
}

// end ends the handshake's context, once the session starts or fails to,
// and lets it go: a session keeps nothing of it (nor of the request's
// contexts it came from) while it runs. serve registers it as a cleanup
// before the ones that use ctx (a refund), which run first.
func (h *handshake) end() {
	if h.stop != nil {
		h.stop()
		h.ctx, h.stop = nil, nil
	}
}

// passing is what a session's goroutine needs: one pointer, so that the
// goroutine starts with a small frame. An idle session's goroutine waits
// at the bottom of pass → tunnel.Join → its copy loop → the viewer's
// websocket's ReadLazy (its console side waits in Parking), and the runtime
// halves a goroutine's stack only while less than a quarter of it is in
// use: the frames on that path decide whether it keeps 8 KiB or 4.
type passing struct {
	p        *Proxy
	req      *request
	log      *slog.Logger
	up       *upstream
	client   net.Conn
	server   net.Conn
	sess     *Session
	arrived  time.Time
	rec      *Recording // serve's: closed here, or by its cleanup if the session did not start
	cleanups []func()
}

// runCleanups runs fs last first, as deferred calls run.
func runCleanups(fs []func()) {
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

// accept upgrades the request to a websocket and runs the viewer's side
// of the handshake. On success the caller owns both conns; on failure
// they are closed, the reason logged (the response is already sent) and
// the Observer told.
func (p *Proxy) accept(ctx context.Context, w http.ResponseWriter, r *http.Request, log *slog.Logger, up *upstream, sess *Session, arrived time.Time) (client, server net.Conn, ok bool) {
	ws, err := wsconn.Upgrade(w, r, &wsconn.Options{
		Subprotocols:    []string{"binary"},
		CheckOrigin:     func(*http.Request) bool { return true }, // checked before
		KeepAlive:       p.KeepAlive,
		DeadPeerTimeout: p.DeadPeerTimeout,
	})
	if err != nil {
		up.closeConn()
		log.Warn("websocket upgrade failed", "err", err)
		p.startFailed(sess, arrived, err)
		return nil, nil, false // Upgrade has answered the request.
	}
	return p.acceptViewer(ctx, ws, log, up, sess, arrived)
}

// acceptViewer runs the viewer's side of the handshake on ws, the
// viewer's websocket or CONNECT tunnel, as accept does.
func (p *Proxy) acceptViewer(ctx context.Context, ws net.Conn, log *slog.Logger, up *upstream, sess *Session, arrived time.Time) (client, server net.Conn, ok bool) {
	if up.hub != nil {
		if !p.acceptingSessions() {
			closeWith(ws, wsconn.CloseGoingAway, reasonShutdown)
			p.startFailed(sess, arrived, errors.New(reasonShutdown))
			return nil, nil, false
		}
		return ws, nil, true // nothing to negotiate; the hub has the console
	}
	client, server, err := up.hs.Client(ctx, ws, up.conn)
	if err != nil {
		closeWith(ws, wsconn.CloseHandshakeFailed, reasonClientHS+": "+errorText(err))
		up.closeConn()
		log.Warn("console handshake with client failed", "err", err)
		p.startFailed(sess, arrived, err)
		return nil, nil, false
	}
	if !p.acceptingSessions() {
		// Shutdown began while this one was opening: it starts no session.
		closeWith(ws, wsconn.CloseGoingAway, reasonShutdown)
		client.Close()
		server.Close()
		p.startFailed(sess, arrived, errors.New(reasonShutdown))
		return nil, nil, false
	}
	return client, newConsoleSide(server, ws), true
}

// pass logs the session's start, passes bytes until either side ends or
// req's context does (Shutdown or EndSessions ending it), and logs its
// end; the Observer hears of both.
func (p *Proxy) pass(ps *passing) {
	p.active.Add(1)
	defer p.passed(ps)
	obs := p.sessionStarted(ps)
	var stats tunnel.Stats
	var err error
	if ps.up.hub != nil {
		stats, err = ps.up.hub.serve(ps.req.ctx, ps.client, ps.sess, *ps.rec, ps.closing)
	} else {
		// Join's own frame, not a function's: an idle session waits
		// under it (see passing).
		stats, err = tunnel.Join(ps.req.ctx, ps.client, ps.server, p.joinOptions(ps)...)
	}
	p.sessionEnded(ps, obs, stats, err)
}

// closing says how to close a session ended by the proxy.
func (ps *passing) closing() (int, string) { return closeFor(ps.p.killer(ps.req)) }

// passed ends pass (deferred, one defer for its small frame): the session
// no longer counts as active; a panic is recovered (net/http recovered a
// handler's, but a session's goroutine is no longer the handler's, so one
// session's panic must not end every session: log it, end this one); the
// request's cleanups run, which end it.
func (p *Proxy) passed(ps *passing) {
	p.active.Add(-1)
	if v := recover(); v != nil {
		ps.log.Error("session panicked; ending it", "panic", v, "stack", string(debug.Stack()))
		ps.client.Close()
		ps.server.Close()
	}
	runCleanups(ps.cleanups)
}

// joinOptions are the Join options of a session: its byte counters, the
// viewer's close code when the proxy ends it, parking, and its
// recording's taps.
//
//go:noinline
func (p *Proxy) joinOptions(ps *passing) []tunnel.JoinOption {
	opts := []tunnel.JoinOption{tunnel.WithCounters(&ps.sess.BytesToConsole, &ps.sess.BytesFromConsole)}
	if o := closeViewerFirst(ps.server, ps.closing); o != nil {
		opts = append(opts, o)
	}
	if p.Parking != nil {
		opts = append(opts, tunnel.WithParking(p.Parking, ParkIdle))
	}
	if r := *ps.rec; r != nil {
		opts = append(opts, recordTaps(r, ps.client, ps.server))
	}
	return opts
}

// sessionStarted logs and reports a session that starts passing bytes.
// Out of line, as sessionEnded: see passing.
//
//go:noinline
func (p *Proxy) sessionStarted(ps *passing) Observer {
	up, sess := ps.up, ps.sess
	info := up.info
	if d, ok := up.hs.(protocols.Describer); ok {
		more := d.Describe()
		if more.Session != "" {
			info.Session = more.Session
		}
		info.Channel = more.Channel
	}
	if info.Session != "" {
		ps.log = ps.log.With("session", info.Session)
	}
	if info.Channel != "" {
		ps.log = ps.log.With("channel", info.Channel)
	}
	sess.Info = info
	sess.Time = time.Now()
	sess.Setup = sess.Time.Sub(ps.arrived)
	ps.log.Info("session start", "auth", info.Auth, "role", sess.Role, "setup", sess.Setup.Round(time.Microsecond))
	obs := p.observer()
	obs.SessionStart(sess)
	p.setSession(ps.req, sess)
	return obs
}

// sessionEnded logs and reports the end of a session.
//
//go:noinline
func (p *Proxy) sessionEnded(ps *passing, obs Observer, stats tunnel.Stats, err error) {
	req, sess := ps.req, ps.sess
	p.setSession(req, nil) // before SessionEnd: Sessions lists only live ones
	sess.Duration = time.Since(sess.Time)
	end := []any{"duration", sess.Duration.Round(time.Millisecond),
		"bytes_to_console", stats.AToB, "bytes_from_console", stats.BToA}
	switch {
	case req.ctx.Err() != nil:
		sess.Outcome, sess.KilledBy = EndKilled, p.killer(req)
		sess.Reason = "ended by the proxy: " + sess.KilledBy
		end = append(end, "ended_by", sess.KilledBy)
	case err != nil:
		sess.Outcome, sess.Reason = EndError, oneLine(err)
		end = append(end, "err", err)
	default:
		sess.Outcome, sess.Reason = EndClosed, "closed"
	}
	ps.log.Info("session end", end...)
	closeRecording(ps.rec, sess, ps.log)
	obs.SessionEnd(sess)
}

// startFailed tells the Observer of a session that failed after the
// upgrade.
func (p *Proxy) startFailed(s *Session, arrived time.Time, err error) {
	s.Time = time.Now()
	s.Setup = s.Time.Sub(arrived)
	s.StartErr, s.Reason = err, oneLine(err)
	p.observer().SessionStart(s)
}

// setSession records the session req passes bytes for (nil: none), for
// Sessions and KillSession.
func (p *Proxy) setSession(req *request, s *Session) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req.sess = s
}

// killer says who ended req: KilledByShutdown, KilledByRevoke or
// KillSession's by.
func (p *Proxy) killer(req *request) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return req.killedBy
}

func (p *Proxy) acceptingSessions() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closing
}

// track registers a request for Shutdown, or reports false once Shutdown
// has begun. The request's context outlives r's: a session goes on after
// the HTTP exchange that opened it.
func (p *Proxy) track(r *http.Request) (*request, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil, false
	}
	// Not from r's context, which net/http cancels when the handler
	// returns (the session goes on), and which would keep its chain of
	// contexts alive for the session: nothing reads its values.
	ctx, cancel := context.WithCancel(context.Background())
	req := &request{ctx: ctx, cancel: cancel, token: Token(r)}
	if p.requests == nil {
		p.requests = make(map[*request]struct{})
	}
	p.requests[req] = struct{}{}
	p.wg.Add(1) // before Shutdown's Wait: closing is false under mu
	return req, true
}

func (p *Proxy) untrack(req *request) {
	req.cancel()
	p.mu.Lock()
	delete(p.requests, req)
	p.mu.Unlock()
	p.wg.Done()
}

// Active returns the number of sessions passing bytes now.
func (p *Proxy) Active() int { return int(p.active.Load()) }

// EndSessions ends the sessions, and the requests still opening one,
// whose token revoked reports true, e.g. tokens no longer in a reloaded
// token file (a resolver's table says who may open a session; what was
// opened goes on until it ends, or until this is called). It returns how
// many it ended; they end as on Shutdown, without waiting.
func (p *Proxy) EndSessions(revoked func(token string) bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for req := range p.requests {
		if req.token != "" && req.ctx.Err() == nil && revoked(req.token) {
			req.killedBy = KilledByRevoke
			req.cancel()
			n++
		}
	}
	return n
}

// Shutdown refuses new sessions and waits for the running ones, and for
// requests still opening one, to end. When ctx ends first it ends them
// and returns ctx's error once they have finished. Call it after
// http.Server.Shutdown, which does not wait for hijacked (websocket)
// connections.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }() // ends when the requests do; awaited below
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	for req := range p.requests {
		if req.ctx.Err() == nil {
			req.killedBy = KilledByShutdown
		}
		req.cancel()
	}
	p.mu.Unlock()
	<-done
	return ctx.Err()
}
