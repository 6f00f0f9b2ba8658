package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
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

	// maxConnsPerClient bounds the connections one client address holds
	// open (connlimit); zero means no bound.
	maxConnsPerClient int
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
	if d.maxConnsPerClient > 0 {
		// Beneath TLS: a refused connection costs no handshake.
		l = connlimit.New(l, d.maxConnsPerClient)
	}
	if d.tls != nil {
		l = tls.NewListener(l, d.tls)
	}
	srv := &http.Server{
		Handler:           d.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	bctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for _, run := range d.background {
		wg.Go(func() { run(bctx) })
	}

	log.Info(d.name+" listening", "address", l.Addr().String(), "tls", d.tls != nil, "socket_activated", activated)
	if d.ready != nil {
		d.ready(l.Addr())
	}
	notifyReady(log)
	if w := watchdog(log); w != nil {
		wg.Go(func() { w(bctx) }) // pings follow READY=1
	}
	errc := make(chan error, 1)
	wg.Go(func() { errc <- srv.Serve(l) })
	select {
	case err := <-errc:
		return fmt.Errorf("%s: %w", d.name, err) // ExitFailure
	case <-ctx.Done():
	}
	log.Info(d.name+" stopping", "drain_timeout", d.drainTimeout)
	notifyStopping(log)
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
