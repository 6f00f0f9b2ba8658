package server

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/proxy/audit"
	"github.com/virtconsole/virtconsole/tunnel/proxy/proxymetrics"
)

// Ops are the operations flags: the Prometheus metrics listener and the
// audit log.
type Ops struct {
	// MetricsListen is where /metrics is served; "" means nowhere.
	MetricsListen string
	// MetricsListenAny allows a MetricsListen that is not loopback.
	MetricsListenAny bool
	// AuditLog is the audit log's path, "-" for standard output; "" means
	// none.
	AuditLog string
}

// addMetricsFlags registers --metrics-listen and --metrics-listen-any.
func addMetricsFlags(fl *pflag.FlagSet, o *Ops) {
	fl.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at http://`ADDR`/metrics, cleartext and without authentication (host:port; loopback only unless --metrics-listen-any; default: off)")
	fl.BoolVar(&o.MetricsListenAny, "metrics-listen-any", false, "let --metrics-listen be a non-loopback address (the endpoint has no TLS and no authentication: firewall it)")
}

// addAuditFlag registers --audit-log.
func addAuditFlag(fl *pflag.FlagSet, o *Ops) {
	fl.StringVar(&o.AuditLog, "audit-log", "", "append audit events (session start and end, refusals, sessions killed) as JSON lines to `FILE` (- for standard output; created 0600, reopened on SIGHUP for logrotate)")
}

// metricsAddr checks --metrics-listen: loopback unless --metrics-listen-any,
// since whoever reaches the endpoint reads it without credentials.
func (o *Ops) metricsAddr() (string, error) {
	if o.MetricsListen == "" {
		return "", nil
	}
	loopback, err := isLoopback(o.MetricsListen)
	if err != nil {
		return "", &cmdutil.FlagError{Err: fmt.Errorf("--metrics-listen %q: want host:port, e.g. 127.0.0.1:9464", o.MetricsListen)}
	}
	if !o.MetricsListenAny && !loopback {
		return "", &cmdutil.FlagError{Err: fmt.Errorf("--metrics-listen %s is not a loopback address and the endpoint has no authentication: use 127.0.0.1:PORT, or add --metrics-listen-any and firewall it", o.MetricsListen)}
	}
	return o.MetricsListen, nil
}

// isLoopback reports whether the host:port addr names a loopback address.
func isLoopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, err
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback()), nil
}

// metrics returns the daemon's metrics, or nil without --metrics-listen,
// and sets d's metrics listener.
func (o *Ops) metrics(d *daemon) (*proxymetrics.Metrics, error) {
	addr, err := o.metricsAddr()
	if err != nil || addr == "" {
		return nil, err
	}
	m := proxymetrics.New()
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler()) // and nothing else
	d.sides = append(d.sides, side{name: "metrics", flag: "--metrics-listen", addr: addr, path: "/metrics", handler: mux})
	return m, nil
}

// observers is the proxy's Observer: the audit log and the metrics,
// either of which may be nil; nil when both are. The audit log comes
// first: once /metrics shows an event, its audit line is written.
func observers(m *proxymetrics.Metrics, a *audit.Log) proxy.Observer {
	var obs proxy.Observers
	if a != nil {
		obs = append(obs, a)
	}
	if m != nil {
		obs = append(obs, m)
	}
	if len(obs) == 0 {
		return nil
	}
	return obs
}

// backend is the resolver_lookup_duration_seconds backend label of res.
func backend(res resolver.Resolver) string {
	switch res.(type) {
	case *resolver.Static:
		return proxymetrics.BackendStatic
	case *resolver.Client:
		return proxymetrics.BackendREST
	}
	return proxymetrics.BackendLibvirt
}

// openAudit opens --audit-log, and makes d reopen it on SIGHUP (after
// logrotate renamed it, to write to a new file by the old name); nil
// without the flag.
func (o *Ops) openAudit(d *daemon, log *slog.Logger) (*audit.Log, error) {
	if o.AuditLog == "" {
		return nil, nil
	}
	a, err := audit.Open(o.AuditLog, log)
	if err != nil {
		return nil, &cmdutil.FlagError{Err: err} // a file a flag names
	}
	d.reloads = append(d.reloads, reloadPart{name: "audit log", reload: a.Reopen})
	return a, nil
}
