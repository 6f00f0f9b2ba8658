// Package resolver is the contract between the console proxy and whatever
// knows which console a token opens: the wire types of the REST API of the
// original libvirt-console-proxy (PROTOCOLS.md §1), the Resolver
// interface, an HTTP client and handler for that API, the static token
// file (the embedded default), and TokenTable, the token table of every
// resolver that holds tokens (the static file's, the libvirt resolver's).
package resolver

import (
	"context"
	"errors"

	"github.com/virtconsole/virtconsole/protocols"
)

// Console is the JSON object that a token resolves to, on the REST API and
// in the static token file. Field names and meanings are fixed by the
// original proxy; new fields may be added, none may change meaning.
type Console struct {
	Type      string `json:"type"`
	Address   string `json:"address"`
	Insecure  bool   `json:"insecure"`
	TLSTunnel bool   `json:"tlsTunnel"`
	Password  string `json:"password,omitempty"`
	// Role is what the token grants: "control" (the default: may type)
	// or "view" (sees everything; the proxy drops its input).
	Role string `json:"role,omitempty"`
	// Record overrides the proxy's recording policy (--record) for this
	// console: "off", "on" (recorded if the recording can be written) or
	// "required" (no session without its recording); "" leaves it to
	// the proxy.
	Record string `json:"record,omitempty"`
}

// Target converts c into a protocols.Target, validating the type and the
// address.
func (c Console) Target() (protocols.Target, error) {
	// Implemented in console.go.
	return consoleTarget(c)
}

// FromTarget is the inverse of Console.Target.
func FromTarget(t protocols.Target) Console {
	return Console{
		Type:      string(t.Kind),
		Address:   t.Address,
		Insecure:  t.Insecure,
		TLSTunnel: t.TLSTunnel,
		Password:  t.Password,
		Role:      string(t.Role),
		Record:    string(t.Record),
	}
}

// Resolver maps a token to the console it opens. Implementations are safe
// for concurrent use and compare tokens in constant time where they hold
// them. Errors wrap ErrNotFound or ErrUnavailable where those apply.
type Resolver interface {
	Resolve(ctx context.Context, token string) (protocols.Target, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, token string) (protocols.Target, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, token string) (protocols.Target, error) {
	return f(ctx, token)
}

var (
	// ErrNotFound means the token opens nothing (HTTP 404).
	ErrNotFound = errors.New("unknown token")
	// ErrUnavailable means the resolver cannot answer now, e.g. its
	// backend is down (HTTP 503); the token may be valid.
	ErrUnavailable = errors.New("resolver unavailable")
	// ErrUnsupported means the token is valid but its console cannot be
	// served through this resolver, e.g. a pty console that only a proxy
	// in the libvirt resolver's own process can reach (HTTP 501).
	ErrUnsupported = errors.New("console not reachable through this resolver")
)

// SingleUser is implemented by resolvers whose tokens may open one
// session only (issue: SPICE replay; all console types). The proxy calls
// Consume when a session starts, before any byte reaches QEMU; after it
// returns nil, Resolve must not find the token again (the libvirt
// resolver rotates the token's secret, so that the used token is dead for
// every proxy reading the same libvirtd).
type SingleUser interface {
	Resolver
	// SingleUse reports whether tokens are single-use under the
	// resolver's policy.
	SingleUse() bool
	// Consume retires token. It is safe for concurrent use; consuming a
	// token that no longer resolves returns an error wrapping ErrNotFound.
	Consume(ctx context.Context, token string) error
}

// Refunder is implemented by single-use resolvers that can give a
// consumed token back. The proxy calls Refund when the session that
// consumed token could not start (the console was unreachable, a
// handshake failed), so that a request that opened nothing does not
// spend it. Between Consume and Refund the token stays spent: of
// concurrent requests with one token at most one holds it at a time.
// The libvirt resolver cannot refund: consuming rotated the secret.
type Refunder interface {
	SingleUser
	// Refund makes token, consumed by this resolver, valid again. It is
	// safe for concurrent use.
	Refund(ctx context.Context, token string) error
}
