package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// debugListener opens --debug-listen: Go's profiling endpoints
// (/debug/pprof/), which show goroutines, heap and CPU profiles of the
// running daemon. They expose its internals and cost CPU when used, so
// the listener is off by default and only a loopback address is taken:
// reach it from elsewhere through an SSH tunnel. The soak test reads the
// goroutine count and the heap after a forced GC from it.
func debugListener(addr string) (net.Listener, error) {
	loopback, err := isLoopback(addr)
	if err != nil {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--debug-listen %q: want host:port, e.g. 127.0.0.1:6060", addr)}
	}
	if !loopback {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--debug-listen %s: only a loopback address is allowed (the profiling endpoints expose the daemon's internals); use 127.0.0.1:PORT and an SSH tunnel", addr)}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, cmdutil.ListenError(addr, "--debug-listen address", err)
	}
	return l, nil
}

// serveDebug returns the background work that serves l until the daemon
// stops.
func serveDebug(l net.Listener, log *slog.Logger) func(context.Context) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := httpServer(mux, log)
	return func(ctx context.Context) {
		log.Info("debug listening", "address", l.Addr().String())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("debug listener failed", "err", err)
			}
		}()
		<-ctx.Done()
		srv.Close()
		<-done
	}
}
