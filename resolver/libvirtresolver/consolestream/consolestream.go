// Package consolestream opens libvirt's console stream of a domain's
// serial or console device (virDomainOpenConsole, what `virsh console`
// uses) as a net.Conn, on a libvirt connection of its own: the way to a
// pty console, which has no network address. Target makes the
// protocols.Target of such a console, whose Dial opens it.
//
// go-libvirt's exported socket package does the framing and this package
// the few remote-protocol calls it needs: go-libvirt's generated
// DomainOpenConsole can only copy the stream into an io.Writer, with no
// way to send keystrokes back.
package consolestream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// Remote protocol numbers (libvirt's remote_protocol.x; go-libvirt keeps
// its copies in an internal package).
const (
	remoteProgram         = 0x20008086
	procConnectOpen       = 1
	procConnectClose      = 2
	procAuthList          = 66
	procAuthPolkit        = 70
	procDomainOpenConsole = 201

	authNone   = 0
	authSASL   = 1
	authPolkit = 2

	// streamChunk bounds the payload of one stream packet (libvirt takes
	// up to 256 KiB).
	streamChunk = 64 << 10
)

var (
	// ErrConsoleBusy means another client holds the console stream; open
	// it with force to take it over.
	ErrConsoleBusy = errors.New("console in use by another client")
	// ErrNoConsoleDevice means the domain has no console device of that
	// name (or none at all).
	ErrNoConsoleDevice = errors.New("no such console device")
)

// Addr is the net.Addr of a console stream, and the Address of its
// Target: a description for logs, which nothing parses, e.g. "libvirt
// qemu:///system domain web serial0".
type Addr struct {
	URI    string // the libvirt URI
	Domain string // the domain's name
	Device string // the device's alias; empty for the first console
}

// Network is "libvirt-console".
func (Addr) Network() string { return "libvirt-console" }

func (a Addr) String() string {
	device := a.Device
	if device == "" {
		device = "default console"
	}
	return "libvirt " + a.URI + " domain " + a.Domain + " " + device
}

// Target is the target of a pty console of a running domain: its Dial
// opens the console stream (Open, with force as given), its Address is
// the stream's Addr.
func Target(kind protocols.Kind, u *transport.URI, dom libvirt.Domain, device string, force bool) protocols.Target {
	return protocols.Target{
		Kind:    kind,
		Address: Addr{u.Raw, dom.Name, device}.String(),
		Dial: func(ctx context.Context) (net.Conn, error) {
			return Open(ctx, u, dom, device, force)
		},
	}
}

// Open dials u's libvirtd on a connection of its own, opens the console
// stream of dom's device by alias (the first console when device is
// empty) and returns it as a net.Conn, as `virsh console` does. With
// force it takes the console over from another client; without, a
// console in use fails with ErrConsoleBusy. dom must be running: its ID
// names the instance. Closing the conn closes the connection.
func Open(ctx context.Context, u *transport.URI, dom libvirt.Domain, device string, force bool) (net.Conn, error) {
	c := &conn{
		u:       u,
		addr:    Addr{u.Raw, dom.Name, device},
		replies: make(map[int32]chan rpcReply),
		data:    make(chan streamMsg, 64),
		closed:  make(chan struct{}),
		rdl:     makeDeadline(),
	}
	c.raw = &transport.Captured{Dialer: transport.Framed(u.Dialer)}
	c.sock = socket.New(c.raw, c)
	// Ending ctx closes the conn: a dial or call in progress fails.
	stop := context.AfterFunc(ctx, c.raw.Abort)
	if err := c.sock.Connect(); err != nil {
		stop()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, libvirtapi.Unreachable(u, err)
	}
	err := c.open(dom, device, force)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
		c.Close()
		return nil, fmt.Errorf("open the console of domain %s: %w", dom.Name, err)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// open does the remote-protocol calls of a console: authenticate, open
// the connection, open the stream.
func (c *conn) open(dom libvirt.Domain, device string, force bool) error {
	if err := c.authenticate(); err != nil {
		return libvirtapi.Unreachable(c.u, err)
	}
	var e xdrEncoder
	e.optString(string(libvirt.RemoteURI(c.u.URL)))
	e.uint32(0)
	if _, err := c.call(procConnectOpen, e.b); err != nil {
		return libvirtapi.Unreachable(c.u, err)
	}
	return c.openStream(dom, device, force)
}

// authenticate answers what libvirtd asks first (AUTH_LIST, even without
// auth): nothing, or polkit; SASL is not supported.
func (c *conn) authenticate() error {
	rep, err := c.call(procAuthList, nil)
	if err != nil {
		return err
	}
	auths, err := decodeInts(rep)
	switch {
	case err != nil:
		return err
	case len(auths) == 0 || slices.Contains(auths, authNone):
		return nil
	case slices.Contains(auths, authPolkit):
		if _, err := c.call(procAuthPolkit, nil); err != nil {
			return fmt.Errorf("polkit authentication: %w", err)
		}
		return nil
	case slices.Contains(auths, authSASL):
		return errors.New("libvirtd requires SASL authentication, which is not supported")
	}
	return fmt.Errorf("libvirtd requires an unsupported authentication type %v", auths)
}

// openStream opens the console stream of dom's device; its packets carry
// the serial of this call.
func (c *conn) openStream(dom libvirt.Domain, device string, force bool) error {
	var e xdrEncoder
	e.string(dom.Name)
	e.fixed(dom.UUID[:])
	e.int32(dom.ID)
	if device == "" {
		e.uint32(0)
	} else {
		e.optString(device)
	}
	var flags uint32
	if force {
		flags = uint32(libvirt.DomainConsoleForce)
	}
	e.uint32(flags)

	c.mu.Lock()
	c.serial++
	c.streamSerial = c.serial
	c.mu.Unlock()
	if _, err := c.callSerial(c.streamSerial, procDomainOpenConsole, e.b); err != nil {
		return c.openErr(err, dom, device)
	}
	return nil
}

// openErr says why libvirtd did not open the console. libvirt reports a
// busy or missing console with a generic code: its message tells.
func (c *conn) openErr(err error, dom libvirt.Domain, device string) error {
	name := device
	if name == "" {
		name = "default console"
	}
	var le libvirt.Error
	switch {
	case !errors.As(err, &le):
	case strings.Contains(le.Message, "Active console session exists"):
		return fmt.Errorf("%w: %s of domain %s is open elsewhere (virsh console?); use force to take it over", ErrConsoleBusy, name, dom.Name)
	case strings.Contains(le.Message, "cannot find character device") || strings.Contains(le.Message, "cannot find console") || strings.Contains(le.Message, "no console devices"):
		return fmt.Errorf("%w: domain %s: %s", ErrNoConsoleDevice, dom.Name, libvirtapi.OneLine(le.Message))
	case le.Code == uint32(libvirt.ErrNoDomain):
		return fmt.Errorf("%w: %s on %s", libvirtapi.ErrDomainNotFound, dom.Name, c.u.Raw)
	case le.Code == uint32(libvirt.ErrOperationInvalid):
		return fmt.Errorf("open %s of domain %s: %s", name, dom.Name, libvirtapi.OneLine(le.Message))
	}
	return fmt.Errorf("open %s of domain %s: %w", name, dom.Name, err)
}
