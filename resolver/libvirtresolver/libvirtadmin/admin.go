// Package libvirtadmin administers the console tokens of libvirt domains:
// Enable gives consoles a token (a libvirt secret named in the
// console-proxy metadata of PROTOCOLS.md §1), Disable removes them, Rotate
// renews them, and Consoles, Token and Lookup read them back with where
// each console is reached. It is what `virtconsole enable`, `disable`,
// `rotate` and `consoles` run, and how a client reads its token and
// target from libvirt.
package libvirtadmin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

var (
	// ErrNoConsoles means the domain has no console device of the kinds
	// asked for.
	ErrNoConsoles = errors.New("no console devices")
	// ErrNotEnabled means the domain has no console-proxy metadata.
	ErrNotEnabled = errors.New("consoles not enabled")
)

// Conn is a connection to one libvirtd for the admin operations. It is
// safe for concurrent use.
type Conn struct {
	u *transport.URI
	l libvirtapi.Libvirt
	o options
}

// Option configures Connect.
type Option func(*options)

type options struct {
	dialer    transport.Dialer
	connector libvirtapi.Connector
	force     bool
}

// WithDialer makes the connection (and console streams) use d instead of
// the transport named by the URI (which still names the driver to open,
// e.g. qemu:///system). For tests and unusual transports.
func WithDialer(d transport.Dialer) Option { return func(o *options) { o.dialer = d } }

// WithConnector makes the connection come from c (console streams still
// use the URI's transport). For tests: a libvirtfake.Hypervisor's Connect.
func WithConnector(c libvirtapi.Connector) Option { return func(o *options) { o.connector = c } }

// WithForceConsoles makes the Dial of the console-stream targets that
// Consoles returns take a console over from another client (virsh console
// --force) instead of failing with consolestream.ErrConsoleBusy.
func WithForceConsoles() Option { return func(o *options) { o.force = true } }

// Connect connects to the libvirt URI (transport.DefaultURI when empty).
// Failures wrap libvirtapi.ErrUnreachable.
func Connect(ctx context.Context, uri string, opts ...Option) (*Conn, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	u, err := transport.Parse(uri, o.dialer)
	if err != nil {
		return nil, err
	}
	l, err := libvirtapi.Connect(ctx, u, o.connector)
	if err != nil {
		return nil, err
	}
	return &Conn{u: u, l: l, o: o}, nil
}

// URI returns the libvirt URI c is connected to.
func (c *Conn) URI() string { return c.u.Raw }

// Close closes the connection.
func (c *Conn) Close() error { return c.l.Disconnect() }

// Domain identifies a domain.
type Domain struct {
	Name    string `json:"name"`
	UUID    string `json:"uuid"`
	ID      int    `json:"id"` // -1 when not running
	Running bool   `json:"running"`
}

// Lookup finds a domain by name, UUID or ID.
func (c *Conn) Lookup(ctx context.Context, domain string) (Domain, error) {
	d, err := c.lookup(ctx, domain)
	if err != nil {
		return Domain{}, err
	}
	return Domain{Name: d.Name, UUID: libvirtapi.UUIDString(d.UUID), ID: int(d.ID), Running: d.ID > 0}, nil
}

func (c *Conn) lookup(ctx context.Context, domain string) (libvirt.Domain, error) {
	if err := ctx.Err(); err != nil {
		return libvirt.Domain{}, err
	}
	if domain == "" {
		return libvirt.Domain{}, errors.New("no domain given: want a name, UUID or ID")
	}
	if u, ok := libvirtapi.ParseUUID(domain); ok {
		d, err := c.l.DomainLookupByUUID(u)
		if err == nil || !libvirt.IsNotFound(err) {
			return d, c.rpcErr(err)
		}
	}
	if id, err := strconv.ParseInt(domain, 10, 32); err == nil && id > 0 {
		d, err := c.l.DomainLookupByID(int32(id))
		if err == nil || !libvirt.IsNotFound(err) {
			return d, c.rpcErr(err)
		}
	}
	d, err := c.l.DomainLookupByName(domain)
	if libvirt.IsNotFound(err) {
		return d, fmt.Errorf("%w: no domain %q (by name, UUID or ID) on %s", libvirtapi.ErrDomainNotFound, domain, c.u.Raw)
	}
	return d, c.rpcErr(err)
}

// rpcErr adds the URI to an error of a libvirt call.
func (c *Conn) rpcErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, libvirt.ErrInterrupted) || errors.Is(err, net.ErrClosed) {
		return libvirtapi.Unreachable(c.u, errors.New("connection lost"))
	}
	return fmt.Errorf("libvirt %s: %s", c.u.Raw, libvirtapi.OneLine(err.Error()))
}

// state is what the admin operations read about a domain.
type state struct {
	dom libvirt.Domain
	x   *domainxml.Domain // from the live XML if running, else the config
	// persistent domains get the metadata in their config too.
	persistent bool
}

func (c *Conn) read(ctx context.Context, domain string) (*state, error) {
	d, err := c.lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	raw, err := c.l.DomainGetXMLDesc(d, libvirt.DomainXMLSecure)
	if err != nil {
		return nil, c.rpcErr(err)
	}
	x, err := domainxml.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", d.Name, err)
	}
	p, err := c.l.DomainIsPersistent(d)
	if err != nil {
		return nil, c.rpcErr(err)
	}
	return &state{dom: d, x: x, persistent: p == 1}, nil
}

// OpenConsole opens the console stream of a domain's serial or console
// device by alias ("serial0"; empty means the first console) with
// consolestream.Open. The domain must be running.
func (c *Conn) OpenConsole(ctx context.Context, domain, device string, force bool) (net.Conn, error) {
	d, err := c.lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	if d.ID <= 0 {
		return nil, fmt.Errorf("domain %s is not running", d.Name)
	}
	return consolestream.Open(ctx, c.u, d, device, force)
}

// Console is one console device of a domain, as Consoles lists it.
type Console struct {
	Kind  protocols.Kind `json:"type"`
	Index int            `json:"index"`
	// Device is the device's alias ("serial0"), the name a console
	// stream is opened by; set for serial and console devices.
	Device string `json:"device,omitempty"`
	// Backend describes the device: "vnc", "spice", "pty",
	// "tcp 127.0.0.1:4555 tls", …
	Backend string `json:"backend"`
	// Target is where the console is reached now: a network address, or
	// for a pty the console stream, which Target.Dial opens. Address says
	// where, for listings ("127.0.0.1:5901", "qemu:///system#UUID/serial0");
	// it is empty when the console cannot be reached (Problem says why,
	// e.g. the domain is not running).
	Target  protocols.Target `json:"-"`
	Address string           `json:"target,omitempty"`
	Problem string           `json:"problem,omitempty"`
	// Enabled reports whether the console has a token (metadata entry and
	// secret).
	Enabled bool `json:"enabled"`
	// Secret is the UUID of the libvirt secret holding the token.
	Secret   string `json:"secret,omitempty"`
	Host     string `json:"host,omitempty"`
	Insecure bool   `json:"insecure"`
	// Token is the secret's value, only when asked for.
	Token string `json:"token,omitempty"`
}

// Consoles lists the console devices of a domain (VNC and SPICE
// graphics, serials, consoles), their targets if it is running, and
// whether they are enabled; token values only when withTokens.
func (c *Conn) Consoles(ctx context.Context, domain string, withTokens bool) ([]Console, error) {
	st, err := c.read(ctx, domain)
	if err != nil {
		return nil, err
	}
	var out []Console
	for _, dev := range st.x.Devices {
		con := Console{Kind: dev.Kind, Index: dev.Index, Backend: dev.Describe()}
		if dev.Kind.IsText() {
			con.Device = dev.Alias
		}
		if m := st.x.Metadata.Find(dev.Kind, dev.Index); m != nil {
			c.fillToken(&con, m, withTokens)
		}
		if st.x.Running() {
			c.fillTarget(&con, st.dom, dev)
		} else {
			con.Problem = joinProblem(con.Problem, "domain not running")
		}
		out = append(out, con)
	}
	return out, nil
}

// fillToken fills in what the metadata entry m says about con.
func (c *Conn) fillToken(con *Console, m *domainxml.MetaConsole, withTokens bool) {
	con.Enabled = true
	con.Secret, con.Host, con.Insecure = m.Token, m.Host, m.IsInsecure()
	if !withTokens {
		return
	}
	tok, err := c.secretValue(m.Token)
	if err != nil {
		con.Enabled = false
		con.Problem = err.Error()
		return
	}
	con.Token = tok
}

// fillTarget fills in where dev of the running dom is reached.
func (c *Conn) fillTarget(con *Console, dom libvirt.Domain, dev domainxml.Device) {
	t, err := dev.Target(con.Host, con.Insecure, c.u.Host)
	switch {
	case err != nil:
		con.Problem = joinProblem(con.Problem, err.Error())
	case dev.Stream():
		con.Target = consolestream.Target(dev.Kind, c.u, dom, dev.Alias, c.o.force)
		con.Address = c.u.Raw + "#" + libvirtapi.UUIDString(dom.UUID) + "/" + dev.Alias
	default:
		con.Target, con.Address = t, t.Address
	}
	if err == nil {
		// As the resolver's targets: the domain is named in audit events
		// and the sessions API.
		con.Target.Domain, con.Target.DomainUUID = dom.Name, libvirtapi.UUIDString(dom.UUID)
	}
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (c *Conn) secretValue(secretUUID string) (string, error) {
	u, ok := libvirtapi.ParseUUID(secretUUID)
	if !ok {
		return "", fmt.Errorf("metadata token %q is not a secret UUID", secretUUID)
	}
	s, err := c.l.SecretLookupByUUID(u)
	if err != nil {
		return "", fmt.Errorf("secret %s: %s", secretUUID, libvirtapi.OneLine(err.Error()))
	}
	v, err := c.l.SecretGetValue(s, 0)
	if err != nil {
		return "", fmt.Errorf("secret %s: %s", secretUUID, libvirtapi.OneLine(err.Error()))
	}
	return string(v), nil
}

// Token returns the token of a domain's console of kind and index, and
// its current target.
func (c *Conn) Token(ctx context.Context, domain string, kind protocols.Kind, index int) (string, Console, error) {
	cons, err := c.Consoles(ctx, domain, true)
	if err != nil {
		return "", Console{}, err
	}
	for _, con := range cons {
		if con.Kind != kind || con.Index != index {
			continue
		}
		switch {
		case con.Enabled && con.Token != "":
			return con.Token, con, nil
		case con.Problem != "" && con.Secret != "":
			return "", con, fmt.Errorf("%w: %s %d of domain %s: %s", ErrNotEnabled, kind, index, domain, con.Problem)
		}
		return "", con, fmt.Errorf("%w: %s %d of domain %s has no token; run 'virtconsole enable %s' first", ErrNotEnabled, kind, index, domain, domain)
	}
	return "", Console{}, fmt.Errorf("%w: domain %s has no %s device with index %d", ErrNoConsoles, domain, kind, index)
}
