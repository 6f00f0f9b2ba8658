package server

// What a replica behind a load balancer needs (cmd/virtconsole/haproxy.cfg):
// /readyz for its health checks, a grace period on SIGTERM during which
// /readyz fails but sessions are still accepted (so that the balancer takes
// the replica out before it refuses anyone), and the client's address from
// the balancer's PROXY protocol header, honoured from the balancer only.

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// Scale are the flags of a replica behind a load balancer.
type Scale struct {
	// DrainGrace is how long /readyz fails before the listener closes on
	// SIGTERM (--drain-grace).
	DrainGrace time.Duration
	// TrustedProxies are the addresses (IPs or CIDRs) whose connections
	// start with a PROXY protocol header (--trusted-proxies).
	TrustedProxies []string
}

func addScaleFlags(fl *pflag.FlagSet, s *Scale) {
	fl.DurationVar(&s.DrainGrace, "drain-grace", 0, "on SIGTERM, fail /readyz but keep accepting new sessions for `DURATION` (longer than the balancer's health-check interval times its fall count), then stop accepting and drain")
	fl.StringSliceVar(&s.TrustedProxies, "trusted-proxies", nil, "load balancers' `ADDRS` (IPs or CIDRs, comma-separated) whose connections must start with a PROXY protocol v2 header giving the client's address; nobody else's header is read")
}

// proxyProtocol wraps l so that connections from the trusted addresses
// must start with a PROXY protocol header (v1 or v2; HAProxy's
// send-proxy-v2), whose source address becomes the connection's
// RemoteAddr; connections from any other address are served as they are,
// so a header they send is never read as one (it fails the TLS or HTTP
// handshake instead).
func proxyProtocol(l net.Listener, trusted []string) (net.Listener, error) {
	if len(trusted) == 0 {
		return l, nil
	}
	policy, err := proxyproto.PolicyFromRanges(trusted, proxyproto.REQUIRE, proxyproto.SKIP)
	if err != nil {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--trusted-proxies: %s", strings.TrimPrefix(err.Error(), "proxyproto: "))}
	}
	// The header is read on the connection's first use, in its own
	// goroutine (the TLS handshake's), never in Accept.
	return &proxyproto.Listener{Listener: l, ConnPolicy: policy, ReadHeaderTimeout: 5 * time.Second}, nil
}

// readiness says whether the proxy can serve new sessions: nil, or why
// not (a libvirt resolver that reaches none of its hypervisors yet).
type readiness func() error

// readyz serves /readyz: 200 "ok" while the daemon takes new sessions,
// 503 with the reason while it is draining or ready says it cannot.
// /healthz stays 200 as long as the process serves at all.
func (d *daemon) readyz(ready readiness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if d.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	}
}

// libvirtReadiness is the readiness of a libvirt resolver: ready once at
// least one of its URIs is connected and synced.
func libvirtReadiness(synced func() (int, int)) readiness {
	return func() error {
		if n, total := synced(); n == 0 {
			return fmt.Errorf("libvirt: none of %d URIs synced yet", total)
		}
		return nil
	}
}

// graceBeforeDrain marks the daemon draining (/readyz fails) and waits
// --drain-grace, still serving, so that a balancer's health checks take
// it out of rotation before it stops accepting.
func (d *daemon) graceBeforeDrain(log *slog.Logger) {
	d.draining.Store(true)
	if d.drainGrace <= 0 {
		return
	}
	log.Info(d.name+" draining: /readyz fails, new sessions accepted during the grace period", "drain_grace", d.drainGrace)
	t := time.NewTimer(d.drainGrace)
	defer t.Stop()
	<-t.C
}
