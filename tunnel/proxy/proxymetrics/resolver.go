package proxymetrics

import (
	"context"
	"errors"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
)

// Resolver backends, the backend label of resolver_lookup_duration_seconds.
const (
	BackendStatic  = "static"  // a token file
	BackendREST    = "rest"    // a REST resolver (--resolver URL)
	BackendLibvirt = "libvirt" // the libvirt resolver
)

// Resolver returns r with each Resolve timed into
// resolver_lookup_duration_seconds{backend,result}. What r implements of
// resolver.SingleUser and resolver.Refunder the result implements too,
// since the proxy asks for them; other methods of r are not reachable
// through it, so keep r for them.
func (m *Metrics) Resolver(backend string, r resolver.Resolver) resolver.Resolver {
	t := timed{r: r, backend: backend, m: m}
	if rf, ok := r.(resolver.Refunder); ok {
		return timedRefunder{timedSingle{t, rf}, rf}
	}
	if su, ok := r.(resolver.SingleUser); ok {
		return timedSingle{t, su}
	}
	return t
}

type timed struct {
	r       resolver.Resolver
	backend string
	m       *Metrics
}

func (t timed) Resolve(ctx context.Context, token string) (protocols.Target, error) {
	start := time.Now()
	target, err := t.r.Resolve(ctx, token)
	t.m.lookups.WithLabelValues(t.backend, result(err)).Observe(time.Since(start).Seconds())
	return target, err
}

// result is the result label of a lookup that returned err.
func result(err error) string {
	switch {
	case err == nil:
		return "found"
	case errors.Is(err, resolver.ErrNotFound):
		return "not_found"
	case errors.Is(err, resolver.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, resolver.ErrUnsupported):
		return "unsupported"
	}
	return "error"
}

type timedSingle struct {
	timed
	su resolver.SingleUser
}

func (t timedSingle) SingleUse() bool { return t.su.SingleUse() }

func (t timedSingle) Consume(ctx context.Context, token string) error {
	return t.su.Consume(ctx, token)
}

type timedRefunder struct {
	timedSingle
	rf resolver.Refunder
}

func (t timedRefunder) Refund(ctx context.Context, token string) error {
	return t.rf.Refund(ctx, token)
}
