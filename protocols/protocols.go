// Package protocols is the vocabulary shared by the console protocols and
// the code that wires them together: what kind of console a token opens,
// where it lives (Target), and the Handshaker contract that prepares a
// viewer's connection and QEMU's connection for pass-through.
//
// This package and its children import only the standard library (and
// each other): they work on any net.Conn, whatever carries it.
package protocols

import (
	"context"
	"fmt"
	"net"
)

// Kind is a console type, as spelled in the resolver's JSON ("type") and
// in the console-proxy domain metadata.
type Kind string

// The console kinds of the original libvirt-console-proxy (PROTOCOLS.md §1).
const (
	KindVNC     Kind = "vnc"
	KindSPICE   Kind = "spice"
	KindSerial  Kind = "serial"  // a <serial> chardev reached over TCP
	KindConsole Kind = "console" // a <console> device reached over TCP
)

// ParseKind returns the Kind spelled s, or an error naming the valid ones.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindVNC, KindSPICE, KindSerial, KindConsole:
		return k, nil
	}
	return "", fmt.Errorf("unknown console type %q: want vnc, spice, serial or console", s)
}

// IsText reports whether k is a byte-stream console (serial or console),
// as opposed to a graphics protocol.
func (k Kind) IsText() bool { return k == KindSerial || k == KindConsole }

// Role is what a viewer may do on a console it shares with others.
type Role string

// The roles. A token grants one (RoleControl unless it says otherwise); a
// viewer may ask for less, never for more.
const (
	RoleControl Role = "control" // sees the console and may type or point
	RoleView    Role = "view"    // sees the console; its input is dropped
)

// RecordPolicy is whether a console's sessions are recorded (a token
// file's "record", a libvirt domain's metadata), overriding the proxy's
// default for the console's kind (--record).
type RecordPolicy string

// The policies. "" is the proxy's default for the console's kind.
const (
	RecordDefault  RecordPolicy = ""
	RecordOff      RecordPolicy = "off"      // never recorded
	RecordOn       RecordPolicy = "on"       // recorded when the recording can be written; the session goes on without it otherwise (fail-open)
	RecordRequired RecordPolicy = "required" // no session without its recording (fail-closed)
)

// ParseRecordPolicy returns the RecordPolicy spelled s, or an error
// naming the valid ones.
func ParseRecordPolicy(s string) (RecordPolicy, error) {
	switch p := RecordPolicy(s); p {
	case RecordDefault, RecordOff, RecordOn, RecordRequired:
		return p, nil
	}
	return "", fmt.Errorf("record %q: want off, on or required", s)
}

// RoleHeader is the HTTP request header by which a viewer asks the
// proxy for a lesser role than its token grants ("view").
const RoleHeader = "X-Virtconsole-Role"

// ParseRole returns the Role spelled s ("" is RoleControl), or an error
// naming the valid ones.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case "":
		return RoleControl, nil
	case RoleControl, RoleView:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want control or view", s)
}

// Least returns the lesser of r and o: RoleView if either is.
func (r Role) Least(o Role) Role {
	if r == RoleView || o == RoleView {
		return RoleView
	}
	return RoleControl
}

// Target is a console as the resolver describes it: what speaks there and
// how to reach it securely.
type Target struct {
	Kind Kind
	// Address is QEMU's "host:port", or with Dial a description.
	Address string
	// Insecure allows cleartext toward QEMU. Without it every byte to QEMU
	// is inside TLS: from the first byte for serial, console, SPICE and
	// tunnelled targets, via VeNCrypt for VNC.
	Insecure bool
	// TLSTunnel wraps the whole QEMU connection in TLS (as opposed to
	// VeNCrypt inside RFB).
	TLSTunnel bool
	// Password is the VNC or SPICE password QEMU wants, if any.
	Password string
	// Dial, if set, reaches a console that is not a network address (a
	// pty console through libvirt's console stream): the resolver that
	// returned the target dials it, Address only describes it for logs,
	// and no TLS is layered on the conn (whoever dials secures it, so
	// Insecure and TLSTunnel do not apply). Such a target cannot travel
	// over the REST API. Nil means TCP to Address.
	Dial func(ctx context.Context) (net.Conn, error)
	// Domain and DomainUUID name the domain whose console this is, when
	// the resolver knows it (the libvirt resolver does; a token file and
	// the REST API do not): for audit records, never for dialling.
	Domain, DomainUUID string
	// Role is what the token grants its viewer; "" means RoleControl.
	// The proxy enforces it: it is not a client's promise.
	Role Role
	// Record overrides the proxy's recording policy for this console;
	// RecordDefault leaves it to the proxy's --record.
	Record RecordPolicy
}

// Host returns the host part of Address, for TLS server-name checks.
func (t Target) Host() string {
	host, _, err := net.SplitHostPort(t.Address)
	if err != nil {
		return t.Address
	}
	return host
}

// TLSFromFirstByte reports whether the connection to QEMU must be wrapped
// in TLS before any protocol byte is exchanged.
func (t Target) TLSFromFirstByte() bool {
	if t.Dial != nil {
		return false // a transport of its own, secured by whoever dials it
	}
	if t.TLSTunnel {
		return true
	}
	if t.Insecure {
		return false
	}
	// VNC negotiates TLS inside RFB (VeNCrypt); everything else is TLS
	// from the first byte (QEMU's TLS chardevs and SPICE tls-port).
	return t.Kind != KindVNC
}

// String describes the target for logs. It never includes the password.
func (t Target) String() string {
	sec := "tls"
	switch {
	case t.TLSTunnel:
		sec = "tls-tunnel"
	case t.Insecure:
		sec = "insecure"
	}
	return fmt.Sprintf("%s %s (%s)", t.Kind, t.Address, sec)
}

// Info is what a handshake learnt that is worth a log line.
type Info struct {
	// Auth names the authentication used toward QEMU, e.g. "vencrypt-x509vnc".
	Auth string
	// Session is a protocol-level session identifier, if the protocol has one.
	Session string
	// Channel names the connection's part of a multi-connection session
	// (SPICE: "display:0").
	Channel string
}

// Describer is implemented by handshakers that learn more in Client than
// Server's Info could say (SPICE's channel and session).
type Describer interface {
	Describe() Info
}

// Handshaker runs a console protocol's opening stage on both legs. The
// proxy calls Server on a freshly dialled QEMU connection before it
// accepts the viewer's websocket, so that failures become HTTP statuses,
// then Client once the viewer's connection is open. Each returns the
// conns to pass bytes through (usually the ones given, or a TLS layer over
// them). Both must honour ctx's deadline and bound every length they read.
type Handshaker interface {
	Server(ctx context.Context, server net.Conn, t Target) (net.Conn, Info, error)
	Client(ctx context.Context, client, server net.Conn) (clientOut, serverOut net.Conn, err error)
}

// PassThrough is the Handshaker of byte-stream consoles: nothing to
// negotiate on either leg.
type PassThrough struct{}

// Server returns server unchanged.
func (PassThrough) Server(_ context.Context, server net.Conn, _ Target) (net.Conn, Info, error) {
	return server, Info{}, nil
}

// Client returns both conns unchanged.
func (PassThrough) Client(_ context.Context, client, server net.Conn) (net.Conn, net.Conn, error) {
	return client, server, nil
}

// HandshakeError is a failure of the protocol handshake that the peer
// explained, such as QEMU refusing a VNC password. Reason is safe to show
// to the viewer.
type HandshakeError struct {
	Op     string // what was being done, e.g. "vnc: QEMU security result"
	Reason string
}

func (e *HandshakeError) Error() string { return e.Op + ": " + e.Reason }

// Deadline applies ctx's deadline (if any) to c and returns a function
// that clears it, so that a handshake on c honours the context even though
// net.Conn reads do not take one.
func Deadline(ctx context.Context, c net.Conn) (clear func()) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	expired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		// Cancelled before the deadline: unblock reads and writes now.
		c.SetDeadline(aLongTimeAgo)
		close(expired)
	})
	return func() {
		if !stop() {
			// The func has started: let it finish, or its past deadline
			// could land after ours and break the conn for good.
			<-expired
		}
		c.SetDeadline(noDeadline)
	}
}
