package server

import (
	"fmt"
	"net/http"
	"net/http/pprof"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// debugSide is --debug-listen: Go's profiling endpoints (/debug/pprof/),
// which show goroutines, heap and CPU profiles of the running daemon.
// They expose its internals and cost CPU when used, so the listener is
// off by default and only a loopback address is taken: reach it from
// elsewhere through an SSH tunnel. The soak test reads the goroutine
// count and the heap after a forced GC from it.
func debugSide(addr string) (side, error) {
	loopback, err := isLoopback(addr)
	if err != nil {
		return side{}, &cmdutil.FlagError{Err: fmt.Errorf("--debug-listen %q: want host:port, e.g. 127.0.0.1:6060", addr)}
	}
	if !loopback {
		return side{}, &cmdutil.FlagError{Err: fmt.Errorf("--debug-listen %s: only a loopback address is allowed (the profiling endpoints expose the daemon's internals); use 127.0.0.1:PORT and an SSH tunnel", addr)}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return side{name: "debug", flag: "--debug-listen", addr: addr, path: "/debug/pprof/", handler: mux}, nil
}
