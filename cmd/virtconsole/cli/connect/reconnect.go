package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// The reconnect backoff: the first wait, its cap, and the jitter (a
// fraction of the wait, either way) that keeps many clients of one
// restarted proxy from coming back at the same instant.
const (
	BackoffMin    = 500 * time.Millisecond
	BackoffMax    = 30 * time.Second
	BackoffJitter = 0.2
)

// ReconnectOptions are --reconnect and --reconnect-max.
type ReconnectOptions struct {
	Enabled bool
	// Max is how long to keep trying without a connection before giving
	// up; zero means until interrupted.
	Max time.Duration
}

// AddReconnectFlags registers --reconnect, with usage saying what it does
// for the command, and --reconnect-max.
func AddReconnectFlags(cmd *cobra.Command, o *ReconnectOptions, usage string) {
	fl := cmd.Flags()
	fl.BoolVar(&o.Enabled, "reconnect", false, usage)
	fl.DurationVar(&o.Max, "reconnect-max", 0, "with --reconnect: give up after `DURATION` without a connection (0: keep trying until interrupted)")
}

// Check refuses --reconnect-max without --reconnect, or negative.
func (o *ReconnectOptions) Check() error {
	switch {
	case o.Max < 0:
		return &cmdutil.FlagError{Err: fmt.Errorf("--reconnect-max %v: want a positive duration, or 0 for no limit", o.Max)}
	case o.Max > 0 && !o.Enabled:
		return &cmdutil.FlagError{Err: errors.New("--reconnect-max needs --reconnect")}
	}
	return nil
}

// Backoff is an exponential backoff with jitter: Min, doubling on every
// Next up to Max, each wait drawn uniformly within ±Jitter of it.
type Backoff struct {
	Min, Max time.Duration
	Jitter   float64
	// Rand returns a number in [0, 1); nil means math/rand/v2.
	Rand func() float64

	next time.Duration
}

// NewBackoff returns the reconnect backoff (BackoffMin, BackoffMax,
// BackoffJitter).
func NewBackoff() *Backoff {
	return &Backoff{Min: BackoffMin, Max: BackoffMax, Jitter: BackoffJitter}
}

// Next returns the next wait.
func (b *Backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = b.Min
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return time.Duration(float64(d) * (1 + b.Jitter*(2*r()-1)))
}

// Reset starts again from Min (after a connection succeeded).
func (b *Backoff) Reset() { b.next = 0 }

// Reconnector opens a console again, along the same Route, after a
// session dropped: it waits with backoff between attempts and says on
// ErrOut, one line each, what happened and what it does next.
type Reconnector struct {
	Route   *Route
	Opts    ReconnectOptions
	ErrOut  io.Writer
	Backoff *Backoff
	// Wait waits d between attempts, or returns early with an error that
	// ends the reconnect (ctx's, or the escape key's); nil waits on a
	// timer and ctx.
	Wait func(ctx context.Context, d time.Duration) error

	prefix string // of every line (Dial's)
	first  bool   // Dial's: no session yet, so "connected"
}

// NewReconnector returns a Reconnector along route.
func NewReconnector(route *Route, o ReconnectOptions, errOut io.Writer) *Reconnector {
	return &Reconnector{Route: route, Opts: o, ErrOut: errOut, Backoff: NewBackoff()}
}

// Final reports whether a session that ended with err must not be
// reconnected: an administrator ended it.
func Final(err error) bool {
	ce, ok := errors.AsType[*wsconn.CloseError](err)
	return ok && ce.Code == wsconn.CloseEndedByAdmin
}

// Redial reconnects after a session was lost (cause says why, for the
// message) and returns the new connection, or the error that ends the
// command: a refusal, a TLS failure, ctx's end, or the last failure once
// Opts.Max has passed. An unreachable proxy or console is tried again.
func (r *Reconnector) Redial(ctx context.Context, cause string) (*Conn, error) {
	return r.retry(ctx, "connection lost ("+cause+")")
}

// Dial dials r.Route, and when that fails in a way waiting may cure,
// tries again as Redial does, each line starting with prefix (e.g.
// "viewer 127.0.0.1:40000: ").
func (r *Reconnector) Dial(ctx context.Context, prefix string) (*Conn, error) {
	conn, err := r.Route.Dial(ctx)
	if err == nil || ctx.Err() != nil {
		return conn, err
	}
	if final := r.final(err); final != nil {
		return nil, final
	}
	rc := *r
	rc.Backoff = &Backoff{Min: r.Backoff.Min, Max: r.Backoff.Max, Jitter: r.Backoff.Jitter, Rand: r.Backoff.Rand}
	rc.prefix, rc.first = prefix, true
	return rc.retry(ctx, cmdutil.OneLine(err))
}

// retry waits and dials until it connects or must stop; what says why it
// is waiting.
func (r *Reconnector) retry(ctx context.Context, what string) (*Conn, error) {
	start := time.Now()
	for {
		d := r.Backoff.Next()
		if r.Opts.Max > 0 && time.Since(start)+d > r.Opts.Max {
			return nil, fmt.Errorf("%s%s; gave up reconnecting after %v (--reconnect-max)", r.prefix, what, r.Opts.Max)
		}
		fmt.Fprintf(r.ErrOut, "virtconsole: %s%s; reconnecting in %.1fs...\n", r.prefix, what, d.Seconds())
		if err := r.wait(ctx, d); err != nil {
			return nil, err
		}
		conn, err := r.Route.Dial(ctx)
		if err == nil {
			done := "reconnected"
			if r.first {
				done = "connected"
			}
			fmt.Fprintf(r.ErrOut, "virtconsole: %s%s\n", r.prefix, done)
			r.Backoff.Reset()
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if final := r.final(err); final != nil {
			return nil, final
		}
		what = "reconnect failed (" + cmdutil.OneLine(err) + ")"
	}
}

func (r *Reconnector) wait(ctx context.Context, d time.Duration) error {
	if r.Wait != nil {
		return r.Wait(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// final returns the error that ends reconnecting after a failed dial, or
// nil to try again. Waiting cannot fix a refusal (a fixed token that was
// single-use, revoked or expired; with DOMAIN the token was read afresh),
// a TLS failure or a usage error; an unreachable proxy or console, or a
// domain that is not (yet) there again, may come back.
func (r *Reconnector) final(err error) error {
	switch cmdutil.ExitCode(err) {
	case cmdutil.ExitRefused:
		if r.Route.Mode == ProxyToken {
			return &cmdutil.DialError{Err: err, Msg: "the token was refused on reconnect (" + cmdutil.OneLine(err) +
				"); a single-use, revoked or expired token cannot be used again: get a new one and run the command again"}
		}
		return &cmdutil.DialError{Err: err, Msg: "reconnect refused: " + cmdutil.OneLine(err)}
	case cmdutil.ExitTLS, cmdutil.ExitUsage, cmdutil.ExitInterrupted:
		return err
	}
	return nil
}
