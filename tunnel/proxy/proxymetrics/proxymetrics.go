// Package proxymetrics is the console proxy's Prometheus instrumentation:
// a proxy.Observer that turns the proxy's events into metrics, a timing
// wrapper for token resolvers, a libvirt connection gauge, and the
// handler that serves them (with the Go runtime and process collectors)
// from a registry of its own, not Prometheus's global one, so that
// nothing else in the process adds series by accident.
//
// No label holds a domain, token, client or console address: label sets
// are bounded (console kind, outcome, HTTP status, resolver backend and
// result, libvirt URI), whatever the number of sessions.
//
// The metrics (all prefixed virtconsole_):
//
//	sessions_active{kind}                       gauge: sessions passing bytes
//	sessions_started_total{kind,outcome}        ok, or failed after the upgrade
//	sessions_ended_total{kind,outcome}          closed, error or killed
//	requests_refused_total{status}              refused before the upgrade, by HTTP status
//	console_bytes_total{kind,direction}         to_console / from_console, counted as they pass
//	session_setup_duration_seconds{kind}        histogram: resolve, dial, both handshakes
//	resolver_lookup_duration_seconds{backend,result}  histogram; its _count counts lookups
//	libvirt_connection_up{uri}                  1 while connected and synced
//	reloads_total{result}                       SIGHUP reloads and certificate renewals: ok or failed
//	last_reload_successful                      gauge: 1 if the last reload succeeded, 0 if not
package proxymetrics

import (
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

const namespace = "virtconsole"

// kinds are the console kinds whose series exist from the start (at 0),
// so that rate() and alerts see them before the first session.
var kinds = []protocols.Kind{protocols.KindVNC, protocols.KindSPICE, protocols.KindSerial, protocols.KindConsole}

// Metrics holds the registry and the metrics. Create it with New; it is
// safe for concurrent use. It implements proxy.Observer.
type Metrics struct {
	reg *prometheus.Registry

	active   *prometheus.GaugeVec
	started  *prometheus.CounterVec
	ended    *prometheus.CounterVec
	refused  *prometheus.CounterVec
	setup    *prometheus.HistogramVec
	lookups  *prometheus.HistogramVec
	libvirt  *prometheus.GaugeVec
	consoleB *byteCollector
	reloads  *prometheus.CounterVec
	reloadOK prometheus.Gauge
}

// New returns Metrics registered, with the Go runtime and process
// collectors, in a new registry.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "sessions_active",
			Help: "Console sessions passing bytes now, by console kind.",
		}, []string{"kind"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sessions_started_total",
			Help: "Console sessions whose websocket was accepted, by kind and outcome (ok, or failed: the viewer's side of the handshake failed).",
		}, []string{"kind", "outcome"}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sessions_ended_total",
			Help: "Console sessions ended, by kind and outcome (closed by either side, error, killed by the proxy).",
		}, []string{"kind", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "requests_refused_total",
			Help: "Requests refused before the websocket upgrade, by HTTP status.",
		}, []string{"status"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "session_setup_duration_seconds",
			Help:    "Time from a request's arrival to its session's start (resolve, dial, both handshakes), by kind.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"kind"}),
		lookups: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "resolver_lookup_duration_seconds",
			Help:    "Token lookups by resolver backend (static, rest, libvirt) and result (found, not_found, unavailable, unsupported, error), and their latency.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5},
		}, []string{"backend", "result"}),
		libvirt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "libvirt_connection_up",
			Help: "1 while the connection to the libvirt URI is up and synced, else 0.",
		}, []string{"uri"}),
		consoleB: newByteCollector(),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reloads_total",
			Help: "Reloads (SIGHUP, or certificate files that changed) by result: ok, or failed (the previous settings stay).",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_reload_successful",
			Help: "1 if the last reload succeeded (or none happened yet), 0 if it failed.",
		}),
	}
	m.reg.MustRegister(m.active, m.started, m.ended, m.refused, m.setup, m.lookups, m.libvirt, m.consoleB, m.reloads, m.reloadOK,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("failed")
	m.reloadOK.Set(1)
	for _, k := range kinds {
		m.active.WithLabelValues(string(k))
		m.started.WithLabelValues(string(k), proxy.StartOK)
		m.ended.WithLabelValues(string(k), proxy.EndClosed)
	}
	return m
}

// Registry returns the registry the metrics are in, for adding more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
}

// Reloaded counts a reload and its result (err nil: it succeeded).
func (m *Metrics) Reloaded(err error) {
	if err != nil {
		m.reloads.WithLabelValues("failed").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("ok").Inc()
	m.reloadOK.Set(1)
}

// Refused implements proxy.Observer.
func (m *Metrics) Refused(r *proxy.Refusal) {
	m.refused.WithLabelValues(strconv.Itoa(r.Status)).Inc()
}

// SessionStart implements proxy.Observer.
func (m *Metrics) SessionStart(s *proxy.Session) {
	kind := string(s.Target.Kind)
	m.started.WithLabelValues(kind, s.StartOutcome()).Inc()
	if s.StartErr != nil {
		return
	}
	m.setup.WithLabelValues(kind).Observe(s.Setup.Seconds())
	m.active.WithLabelValues(kind).Inc()
	m.consoleB.start(s)
}

// SessionEnd implements proxy.Observer.
func (m *Metrics) SessionEnd(s *proxy.Session) {
	kind := string(s.Target.Kind)
	m.consoleB.end(s)
	m.active.WithLabelValues(kind).Dec()
	m.ended.WithLabelValues(kind, s.Outcome).Inc()
}

// LibvirtConnState sets the libvirt_connection_up gauge of uri; it is
// libvirtresolver.WithConnState's callback. A password in the URI's
// user info (libvirt has no use for one, but a URI may carry it) is
// replaced by "xxxxx".
func (m *Metrics) LibvirtConnState(uri string, up bool) {
	if u, err := url.Parse(uri); err == nil && u.User != nil {
		uri = u.Redacted()
	}
	v := 0.0
	if up {
		v = 1
	}
	m.libvirt.WithLabelValues(uri).Set(v)
}

// byteCollector is console_bytes_total: the bytes of ended sessions plus
// those the running ones have passed so far, read from their counters
// at scrape time. The byte path thus costs one atomic add per write (see
// tunnel.WithCounters) and nothing here.
type byteCollector struct {
	desc *prometheus.Desc

	mu   sync.Mutex
	done map[protocols.Kind]*[2]int64 // to, from console; of ended sessions
	live map[*proxy.Session]struct{}
}

func newByteCollector() *byteCollector {
	c := &byteCollector{
		desc: prometheus.NewDesc(namespace+"_console_bytes_total",
			"Bytes passed to and from consoles (direction to_console or from_console), by kind; running sessions included.",
			[]string{"kind", "direction"}, nil),
		done: map[protocols.Kind]*[2]int64{},
		live: map[*proxy.Session]struct{}{},
	}
	for _, k := range kinds {
		c.done[k] = new([2]int64)
	}
	return c
}

func (c *byteCollector) start(s *proxy.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live[s] = struct{}{}
	if c.done[s.Target.Kind] == nil {
		c.done[s.Target.Kind] = new([2]int64)
	}
}

// end moves s's bytes from the live set to the totals, under the lock a
// scrape takes: no scrape sees them twice or not at all.
func (c *byteCollector) end(s *proxy.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.live, s)
	t := c.done[s.Target.Kind]
	t[0] += s.BytesToConsole.Load()
	t[1] += s.BytesFromConsole.Load()
}

// Describe implements prometheus.Collector.
func (c *byteCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *byteCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	totals := make(map[protocols.Kind][2]int64, len(c.done))
	for k, t := range c.done {
		totals[k] = *t
	}
	for s := range c.live {
		t := totals[s.Target.Kind]
		t[0] += s.BytesToConsole.Load()
		t[1] += s.BytesFromConsole.Load()
		totals[s.Target.Kind] = t
	}
	c.mu.Unlock()
	for k, t := range totals {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t[0]), string(k), "to_console")
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(t[1]), string(k), "from_console")
	}
}
