package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/connlimit"
)

// daemon is one of the HTTP(S) daemons: a handler behind a listener, the
// goroutines it runs alongside, and how it stops.
type daemon struct {
	name    string // "proxy" or "resolver", as in "proxy listening"
	addr    string // --listen
	tls     *tls.Config
	handler http.Handler
	ready   func(net.Addr) // called with the listening address (tests)

	// background runs alongside the server until it stops (the token
	// file's watch); serve returns only when every one has.
	background []func(context.Context)

	// drain, if set, waits for the handler's work that outlives its HTTP
	// exchange (the proxy's sessions); drainTimeout bounds it.
	drain        func(context.Context) error
	drainTimeout time.Duration

	// drainGrace and draining: on SIGTERM, /readyz fails (draining) for
	// drainGrace before the listener closes (scale.go).
	drainGrace time.Duration
	draining   atomic.Bool

	// trustedProxies send a PROXY protocol header first (scale.go).
	trustedProxies []string

	// maxConnsPerClient bounds the connections one client address holds
	// open (connlimit); zero means no bound.
	maxConnsPerClient int

	// sides are listeners of their own beside the daemon's: the metrics
	// (--metrics-listen, cleartext, so that scrapers need no credentials
	// of the daemon's and reach nothing else) and the admin API
	// (--admin-listen, client certificates only). They stop with the
	// daemon, without draining: their requests are short.
	sides []side

	// reloads are what SIGHUP re-reads, in order (reload.go); certs are
	// the credentials also polled for renewals; reloaded, if set, is told
	// each outcome (the metrics).
	reloads  []reloadPart
	certs    map[string]poller
	reloaded func(error)
}

// side is a listener beside the daemon's own, serving handler.
type side struct {
	name    string      // "metrics", as in "metrics listening"
	flag    string      // "--metrics-listen", for a listen error
	addr    string      // the flag's value
	tls     *tls.Config // nil: cleartext
	path    string      // logged with the address: what it serves
	handler http.Handler
	// maxConns bounds each client address's open connections
	// (connlimit); zero means none.
	maxConns int
	// trusted are load balancers whose connections start with a PROXY
	// protocol header (--trusted-proxies); with them, maxConns is the
	// balancer's to enforce, as on the daemon's own listener.
	trusted []string
	// bound, if set, is told the listener's address before it serves.
	bound func(net.Addr)
}

// listen opens the side's listener and returns the server for it.
func (s side) listen(log *slog.Logger) (net.Listener, *http.Server, error) {
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return nil, nil, cmdutil.ListenError(s.addr, s.flag+" address", err)
	}
	pl, err := proxyProtocol(l, s.trusted)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	l = pl
	if s.maxConns > 0 && len(s.trusted) == 0 {
		l = connlimit.New(l, s.maxConns) // beneath TLS, as the daemon's own
	}
	if s.tls != nil {
		l = tls.NewListener(l, s.tls)
	}
	return l, httpServer(s.handler, log), nil
}

// Every daemon's bounds on its clients' connections, after Go's net/http
// hardening advice and nginx's defaults: a connection idle between
// requests is closed (nginx's keepalive_timeout is 75 s), and a request's
// headers are bounded to what a websocket upgrade with a token cookie
// needs, rather than Go's 1 MiB.
var idleTimeout = 60 * time.Second // tests shorten it

const maxHeaderBytes = 8 << 10 // net/http allows 4 KiB more for the request line

// serve runs the daemon until ctx ends, then stops accepting, drains,
// waits for its goroutines and returns nil: a signal is a normal way for
// a daemon to stop.
func (d *daemon) serve(ctx context.Context, log *slog.Logger) error {
	l, activated, err := d.listen()
	if err != nil {
		return err
	}
	pl, err := proxyProtocol(l, d.trustedProxies)
	if err != nil {
		l.Close()
		return err
	}
	l = pl
	if d.maxConnsPerClient > 0 {
		// Beneath TLS: a refused connection costs no handshake.
		l = connlimit.New(l, d.maxConnsPerClient)
	}
	if d.tls != nil {
		l = tls.NewListener(l, d.tls)
	}
	var sides []*http.Server
	var sideLs []net.Listener
	defer func() {
		for _, sl := range sideLs {
			sl.Close() // those a failed listen left unserved
		}
	}()
	for _, sd := range d.sides {
		sl, ssrv, err := sd.listen(log)
		if err != nil {
			l.Close()
			return err
		}
		sideLs, sides = append(sideLs, sl), append(sides, ssrv)
	}
	srv := httpServer(d.handler, log)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	bctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for _, run := range d.background {
		wg.Go(func() { run(bctx) })
	}
	if len(d.certs) > 0 {
		wg.Go(func() { d.watchCerts(log, d.certs)(bctx) })
	}
	// SIGHUP reloads, from before the daemon says it is listening: the
	// signal must not kill it once it does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	wg.Go(func() { d.reloadOnSignal(bctx, log, hup) })

	log.Info(d.name+" listening", "address", l.Addr().String(), "tls", d.tls != nil, "socket_activated", activated)
	if d.ready != nil {
		d.ready(l.Addr())
	}
	notifyReady(log)
	if w := watchdog(log); w != nil {
		wg.Go(func() { w(bctx) }) // pings follow READY=1
	}
	errc := make(chan error, 1+len(sides))
	wg.Go(func() { errc <- srv.Serve(l) })
	for i, ssrv := range sides {
		sd, sl := d.sides[i], sideLs[i]
		log.Info(sd.name+" listening", "address", sd.scheme()+sl.Addr().String()+sd.path)
		if sd.bound != nil {
			sd.bound(sl.Addr())
		}
		wg.Go(func() { errc <- fmt.Errorf("%s: %w", sd.name, ssrv.Serve(sl)) })
	}
	sideLs = nil // Serve closes them now
	closeSides := func() {
		for _, ssrv := range sides {
			ssrv.Close() // Serve returns and its connections close: no draining
		}
	}
	select {
	case err := <-errc:
		// One server failed: stop the others too, or waiting for the
		// goroutines would wait for them forever.
		srv.Close()
		closeSides()
		return fmt.Errorf("%s: %w", d.name, err) // ExitFailure
	case <-ctx.Done():
	}
	notifyStopping(log)
	d.graceBeforeDrain(log)
	log.Info(d.name+" stopping", "drain_timeout", d.drainTimeout)
	closeSides()
	dctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout)
	defer cancel()
	srv.Shutdown(dctx)
	if d.drain != nil {
		if err := d.drain(dctx); err != nil {
			log.Warn("sessions closed at the end of the drain period")
		}
	}
	stop()
	wg.Wait() // Serve and the background work have returned
	log.Info(d.name + " stopped")
	return nil
}

// listen returns the socket systemd handed over, if any (then --listen
// is not used, and activated is true), else a new one on --listen.
func (d *daemon) listen() (l net.Listener, activated bool, err error) {
	if l, err = activatedListener(); err != nil || l != nil {
		return l, l != nil, err
	}
	if l, err = net.Listen("tcp", d.addr); err != nil {
		return nil, false, cmdutil.ListenError(d.addr, "--listen address", err)
	}
	return l, false, nil
}

// tokenWatchInterval is how often a static token file is checked for
// changes (tests shorten it).
var tokenWatchInterval = 2 * time.Second

// watchTokens returns the background work of a static token file: reload
// it when it changes. Other resolvers have none here.
func watchTokens(res resolver.Resolver, log *slog.Logger) []func(context.Context) {
	st, ok := res.(*resolver.Static)
	if !ok || st.Path() == "" {
		return nil
	}
	interval := tokenWatchInterval
	return []func(context.Context){func(ctx context.Context) { st.Watch(ctx, interval, log) }}
}

// httpServer is every daemon's http.Server for h: the bounds above.
func httpServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// scheme is the side's URL scheme, for its listening line.
func (s side) scheme() string {
	if s.tls != nil {
		return "https://"
	}
	return "http://"
}
