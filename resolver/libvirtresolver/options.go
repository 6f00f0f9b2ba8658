package libvirtresolver

import (
	"log/slog"
	"time"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// Option configures New.
type Option func(*options)

type options struct {
	dialer        transport.Dialer
	logger        *slog.Logger
	minBackoff    time.Duration
	maxBackoff    time.Duration
	resync        time.Duration
	streams       bool
	forceConsoles bool
	reusable      bool
	connector     libvirtapi.Connector
	connState     func(uri string, up bool)
}

func buildOptions(opts []Option) options {
	o := options{
		logger:     slog.New(slog.DiscardHandler),
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 10 * time.Second,
		resync:     time.Minute,
		connState:  func(string, bool) {},
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithDialer makes every connection to libvirtd (console streams too) use
// d instead of the transport named by the URI (which still names the
// driver to open, e.g. qemu:///system). For tests and unusual transports.
func WithDialer(d transport.Dialer) Option { return func(o *options) { o.dialer = d } }

// WithConnector makes every connection to libvirtd come from c (console
// streams still use the URI's transport). For tests: a
// libvirtfake.Hypervisor's Connect.
func WithConnector(c libvirtapi.Connector) Option { return func(o *options) { o.connector = c } }

// WithLogger sets where the resolver logs connection changes and consoles
// it cannot serve. Token values are never logged. The default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithBackoff sets the delays between reconnection attempts after libvirtd
// went away: the first is min, each next one doubles, up to max.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) { o.minBackoff, o.maxBackoff = min, max }
}

// WithResync sets how often the resolver re-reads every running domain
// even without events (0 turns it off). It catches secret values changed
// behind its back (virsh secret-set-value), for which libvirt sends no
// event go-libvirt can route; Rotate does not need it. Default one minute.
func WithResync(d time.Duration) Option { return func(o *options) { o.resync = d } }

// WithConsoleStreams lets the resolver answer tokens of pty serial
// consoles with targets whose Dial opens libvirt's console stream: for a
// proxy running in the same process (such a target cannot travel over the
// REST API). Without it such tokens fail with an error wrapping
// ErrStreamOnly.
func WithConsoleStreams() Option { return func(o *options) { o.streams = true } }

// WithForceConsoles makes the Dial of console-stream targets take over a
// console stream that another client holds (virsh console --force)
// instead of failing with consolestream.ErrConsoleBusy.
func WithForceConsoles() Option { return func(o *options) { o.forceConsoles = true } }

// WithReusableTokens turns the resolver's single-use policy off: its
// SingleUse reports false, so a proxy lets a token open any number of
// sessions. By default tokens are single-use (see Resolver.Consume).
func WithReusableTokens() Option { return func(o *options) { o.reusable = true } }

// WithConnState makes the resolver call f with each URI (as given) and
// whether it is connected and synced: false for every URI when New
// starts, then at each change. For a metrics gauge; f must not block.
func WithConnState(f func(uri string, up bool)) Option {
	return func(o *options) { o.connState = f }
}
