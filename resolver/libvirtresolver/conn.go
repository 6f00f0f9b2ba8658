package libvirtresolver

import (
	"context"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

var (
	// ErrDomainNotFound means no domain has that name, UUID or ID.
	ErrDomainNotFound = errors.New("domain not found")
	// ErrNoConsoles means the domain has no console device of the kinds
	// asked for.
	ErrNoConsoles = errors.New("no console devices")
	// ErrNotEnabled means the domain has no console-proxy metadata.
	ErrNotEnabled = errors.New("consoles not enabled")
	// ErrStreamOnly means a token names a pty console, which only a proxy
	// in the resolver's own process can reach (see WithConsoleStreams).
	ErrStreamOnly = fmt.Errorf("%w: console reachable only through libvirt's console stream", resolver.ErrUnsupported)
)

// Conn is a connection to one libvirtd for the admin operations (enable,
// disable, rotate, list) and for opening console streams. It is safe for
// concurrent use.
type Conn struct {
	t *target
	l libvirtapi.Libvirt
	o options
}

// Connect connects to the libvirt URI (DefaultURI when empty). Failures
// wrap ErrUnreachable.
func Connect(ctx context.Context, uri string, opts ...Option) (*Conn, error) {
	o := buildOptions(opts)
	t, err := parseURI(uri, &o)
	if err != nil {
		return nil, err
	}
	l, err := t.connect(ctx, &o)
	if err != nil {
		return nil, err
	}
	return &Conn{t: t, l: l, o: o}, nil
}

// URI returns the libvirt URI c is connected to.
func (c *Conn) URI() string { return c.t.raw }

// Close closes the connection.
func (c *Conn) Close() error { return c.l.Disconnect() }

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

// Domain identifies a domain.
type Domain struct {
	Name    string `json:"name"`
	UUID    string `json:"uuid"`
	ID      int    `json:"id"` // -1 when not running
	Running bool   `json:"running"`
}

func domainOf(d libvirt.Domain) Domain {
	return Domain{Name: d.Name, UUID: uuidString(d.UUID), ID: int(d.ID), Running: d.ID > 0}
}

// Lookup finds a domain by name, UUID or ID.
func (c *Conn) Lookup(ctx context.Context, domain string) (Domain, error) {
	d, err := c.lookup(ctx, domain)
	if err != nil {
		return Domain{}, err
	}
	return domainOf(d), nil
}

func (c *Conn) lookup(ctx context.Context, domain string) (libvirt.Domain, error) {
	if err := ctx.Err(); err != nil {
		return libvirt.Domain{}, err
	}
	if domain == "" {
		return libvirt.Domain{}, errors.New("no domain given: want a name, UUID or ID")
	}
	if u, ok := parseUUID(domain); ok {
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
		return d, fmt.Errorf("%w: no domain %q (by name, UUID or ID) on %s", ErrDomainNotFound, domain, c.t.raw)
	}
	return d, c.rpcErr(err)
}

// rpcErr adds the URI to an error of a libvirt call.
func (c *Conn) rpcErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, libvirt.ErrInterrupted) || errors.Is(err, net.ErrClosed) {
		return &connectError{uri: c.t.raw, transport: c.t.transport, err: errors.New("connection lost")}
	}
	return fmt.Errorf("libvirt %s: %s", c.t.raw, oneLine(err.Error()))
}

// state is what the admin operations read about a domain.
type state struct {
	dom     libvirt.Domain
	def     *libvirtxml.Domain // live XML if running, else the config
	meta    *metaConsoles      // from def
	running bool
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
	var def libvirtxml.Domain
	if err := def.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("domain %s: parse XML: %w", d.Name, err)
	}
	st := &state{dom: d, def: &def, running: def.ID != nil && *def.ID > 0}
	if def.Metadata != nil {
		if st.meta, err = domainMetadata(def.Metadata.XML); err != nil {
			return nil, fmt.Errorf("domain %s: %w", d.Name, err)
		}
	}
	if p, err := c.l.DomainIsPersistent(d); err == nil {
		st.persistent = p == 1
	} else {
		return nil, c.rpcErr(err)
	}
	return st, nil
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
	devs := devices(st.def)
	for _, dev := range devs {
		con := Console{Kind: dev.kind, Index: dev.index, Backend: dev.describe()}
		if dev.kind.IsText() {
			con.Device = dev.alias
		}
		var mc *metaConsole
		if st.meta != nil {
			for i := range st.meta.Consoles {
				m := &st.meta.Consoles[i]
				if k, err := m.kind(); err == nil && k == dev.kind {
					if n, err := m.index(); err == nil && n == dev.index {
						mc = m
						break
					}
				}
			}
		}
		if mc != nil {
			con.Enabled = true
			con.Secret, con.Host, con.Insecure = mc.Token, mc.Host, mc.insecure()
			if withTokens {
				tok, err := c.secretValue(mc.Token)
				if err != nil {
					con.Enabled = false
					con.Problem = err.Error()
				} else {
					con.Token = tok
				}
			}
		}
		if st.running {
			t, err := deviceTarget(dev, con.Host, con.Insecure, c.t.host)
			switch {
			case err != nil:
				con.Problem = joinProblem(con.Problem, err.Error())
			case dev.stream():
				con.Target = streamTarget(dev.kind, c.t, st.dom, dev.alias, c.o.forceConsoles)
				con.Address = c.t.raw + "#" + uuidString(st.dom.UUID) + "/" + dev.alias
			default:
				con.Target, con.Address = t, t.Address
			}
		} else {
			con.Problem = joinProblem(con.Problem, "domain not running")
		}
		out = append(out, con)
	}
	return out, nil
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (c *Conn) secretValue(secretUUID string) (string, error) {
	u, ok := parseUUID(secretUUID)
	if !ok {
		return "", fmt.Errorf("metadata token %q is not a secret UUID", secretUUID)
	}
	s, err := c.l.SecretLookupByUUID(u)
	if err != nil {
		return "", fmt.Errorf("secret %s: %s", secretUUID, oneLine(err.Error()))
	}
	v, err := c.l.SecretGetValue(s, 0)
	if err != nil {
		return "", fmt.Errorf("secret %s: %s", secretUUID, oneLine(err.Error()))
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
		if con.Kind == kind && con.Index == index {
			if !con.Enabled || con.Token == "" {
				if con.Problem != "" && con.Secret != "" {
					return "", con, fmt.Errorf("%w: %s %d of domain %s: %s", ErrNotEnabled, kind, index, domain, con.Problem)
				}
				return "", con, fmt.Errorf("%w: %s %d of domain %s has no token; run 'virtconsole enable %s' first", ErrNotEnabled, kind, index, domain, domain)
			}
			return con.Token, con, nil
		}
	}
	return "", Console{}, fmt.Errorf("%w: domain %s has no %s device with index %d", ErrNoConsoles, domain, kind, index)
}

// Enable gives consoles of a domain a token each: a libvirt secret per
// console (ephemeral='no' private='no', value 32 random bytes in
// base64url) referenced from the console-proxy metadata, which is written
// to the live domain (if running) and its config (if persistent). kinds
// selects the device kinds (all when empty); host and insecure go into
// the metadata entries. Consoles that are already enabled keep their
// token, so running Enable twice is harmless. If a step fails the secrets
// it created are removed again.
func (c *Conn) Enable(ctx context.Context, domain string, kinds []protocols.Kind, host string, insecure bool) ([]Console, error) {
	st, err := c.read(ctx, domain)
	if err != nil {
		return nil, err
	}
	want := func(k protocols.Kind) bool { return len(kinds) == 0 || slices.Contains(kinds, k) }
	var picked []device
	for _, dev := range devices(st.def) {
		if want(dev.kind) {
			picked = append(picked, dev)
		}
	}
	if len(picked) == 0 {
		what := "vnc, spice, serial or console"
		if len(kinds) > 0 {
			var s []string
			for _, k := range kinds {
				s = append(s, string(k))
			}
			what = strings.Join(s, " or ")
		}
		return nil, fmt.Errorf("%w: domain %s has no %s device; add one (virsh edit) or pick another type", ErrNoConsoles, st.dom.Name, what)
	}

	meta := &metaConsoles{}
	if st.meta != nil {
		meta.Consoles = slices.Clone(st.meta.Consoles)
	}
	var created []libvirt.Secret
	rollback := func() {
		for _, s := range created {
			c.l.SecretUndefine(s)
		}
	}
	domUUID := uuidString(st.dom.UUID)
	for _, dev := range picked {
		idx := -1
		for i, m := range meta.Consoles {
			k, err1 := m.kind()
			n, err2 := m.index()
			if err1 == nil && err2 == nil && k == dev.kind && n == dev.index {
				idx = i
				break
			}
		}
		if idx >= 0 {
			m := &meta.Consoles[idx]
			if _, err := c.secretValue(m.Token); err == nil {
				m.Host, m.Insecure, m.Port = host, yesNo(insecure), strconv.Itoa(dev.index)
				continue
			}
			// The secret is gone: make a new one below.
		}
		if err := ctx.Err(); err != nil {
			rollback()
			return nil, err
		}
		s, err := c.newSecret(dev, domUUID)
		if err != nil {
			rollback()
			return nil, err
		}
		created = append(created, s)
		m := metaConsole{Token: uuidString(s.UUID), Type: string(dev.kind), Port: strconv.Itoa(dev.index), Insecure: yesNo(insecure), Host: host}
		if idx >= 0 {
			meta.Consoles[idx] = m
		} else {
			meta.Consoles = append(meta.Consoles, m)
		}
	}
	if err := c.writeMetadata(st, meta); err != nil {
		rollback()
		return nil, err
	}
	all, err := c.Consoles(ctx, domUUID, false)
	if err != nil {
		return nil, err
	}
	var out []Console
	for _, con := range all {
		if con.Enabled && want(con.Kind) {
			out = append(out, con)
		}
	}
	return out, nil
}

type secretXML struct {
	XMLName     xml.Name `xml:"secret"`
	Ephemeral   string   `xml:"ephemeral,attr"`
	Private     string   `xml:"private,attr"`
	Description string   `xml:"description"`
}

// secretDescription names the console and the domain, so that Disable
// can find secrets a failed run left behind.
func secretDescription(kind protocols.Kind, index int, domUUID string) string {
	return fmt.Sprintf("virtconsole %s console %d token for domain %s", kind, index, domUUID)
}

func (c *Conn) newSecret(dev device, domUUID string) (libvirt.Secret, error) {
	b, _ := xml.Marshal(secretXML{Ephemeral: "no", Private: "no", Description: secretDescription(dev.kind, dev.index, domUUID)})
	s, err := c.l.SecretDefineXML(string(b), 0)
	if err != nil {
		return s, fmt.Errorf("create the secret for %s %d: %w", dev.kind, dev.index, c.rpcErr(err))
	}
	if err := c.l.SecretSetValue(s, []byte(resolver.NewToken()), 0); err != nil {
		c.l.SecretUndefine(s)
		return s, fmt.Errorf("set the secret for %s %d: %w", dev.kind, dev.index, c.rpcErr(err))
	}
	return s, nil
}

// writeMetadata writes (or with an empty meta removes) the metadata on the
// live domain if running and in its config if persistent.
func (c *Conn) writeMetadata(st *state, meta *metaConsoles) error {
	var flags libvirt.DomainModificationImpact
	if st.running {
		flags |= libvirt.DomainAffectLive
	}
	if st.persistent {
		flags |= libvirt.DomainAffectConfig
	}
	var val libvirt.OptString
	if meta != nil && len(meta.Consoles) > 0 {
		s, err := meta.marshal()
		if err != nil {
			return err
		}
		val = libvirt.OptString{s}
	}
	err := c.l.DomainSetMetadata(st.dom, int32(libvirt.DomainMetadataElement), val,
		libvirt.OptString{MetadataKey}, libvirt.OptString{Namespace}, flags)
	if err != nil {
		return fmt.Errorf("write the console metadata of domain %s: %w", st.dom.Name, c.rpcErr(err))
	}
	return nil
}

// Disable removes a domain's console-proxy metadata (live and config) and
// the secrets it referenced, plus any secret of ours naming the domain
// that a failed run left behind. Disabling a domain that is not enabled
// is harmless.
func (c *Conn) Disable(ctx context.Context, domain string) error {
	st, err := c.read(ctx, domain)
	if err != nil {
		return err
	}
	var secrets []string
	if st.meta != nil {
		for _, m := range st.meta.Consoles {
			secrets = append(secrets, m.Token)
		}
	}
	// The config may reference other secrets than the live XML.
	if st.running && st.persistent {
		if raw, err := c.l.DomainGetXMLDesc(st.dom, libvirt.DomainXMLInactive); err == nil {
			var def libvirtxml.Domain
			if def.Unmarshal(raw) == nil && def.Metadata != nil {
				if m, _ := domainMetadata(def.Metadata.XML); m != nil {
					for _, mc := range m.Consoles {
						secrets = append(secrets, mc.Token)
					}
				}
			}
		}
	}
	if st.meta != nil || len(secrets) > 0 {
		if err := c.writeMetadata(st, nil); err != nil {
			return err
		}
	}
	domUUID := uuidString(st.dom.UUID)
	if all, _, err := c.l.ConnectListAllSecrets(1, 0); err == nil {
		for _, s := range all {
			if x, err := c.l.SecretGetXMLDesc(s, 0); err == nil && strings.Contains(x, "token for domain "+domUUID+"<") {
				secrets = append(secrets, uuidString(s.UUID))
			}
		}
	}
	var errs []error
	seen := map[string]bool{}
	for _, id := range secrets {
		if seen[id] {
			continue
		}
		seen[id] = true
		u, ok := parseUUID(id)
		if !ok {
			continue
		}
		s, err := c.l.SecretLookupByUUID(u)
		if err != nil {
			continue // gone already
		}
		if err := c.l.SecretUndefine(s); err != nil {
			errs = append(errs, fmt.Errorf("remove secret %s: %w", id, c.rpcErr(err)))
		}
	}
	return errors.Join(errs...)
}

// Rotate gives every enabled console of a domain a new token value. It
// rewrites the live metadata unchanged, so that resolvers watching the
// domain re-read the secrets at once.
func (c *Conn) Rotate(ctx context.Context, domain string) ([]Console, error) {
	st, err := c.read(ctx, domain)
	if err != nil {
		return nil, err
	}
	if st.meta == nil || len(st.meta.Consoles) == 0 {
		return nil, fmt.Errorf("%w: domain %s has no console tokens; run enable first", ErrNotEnabled, st.dom.Name)
	}
	for _, m := range st.meta.Consoles {
		u, ok := parseUUID(m.Token)
		if !ok {
			continue
		}
		s, err := c.l.SecretLookupByUUID(u)
		if err != nil {
			return nil, fmt.Errorf("secret %s of %s %s: %w; run enable to recreate it", m.Token, m.Type, m.Port, c.rpcErr(err))
		}
		if err := c.l.SecretSetValue(s, []byte(resolver.NewToken()), 0); err != nil {
			return nil, fmt.Errorf("set secret %s: %w", m.Token, c.rpcErr(err))
		}
	}
	if st.running {
		// Only to raise a metadata-change event; the config is unchanged.
		live := &state{dom: st.dom, running: true}
		if err := c.writeMetadata(live, st.meta); err != nil {
			return nil, err
		}
	}
	cons, err := c.Consoles(ctx, uuidString(st.dom.UUID), false)
	if err != nil {
		return nil, err
	}
	var out []Console
	for _, con := range cons {
		if con.Enabled {
			out = append(out, con)
		}
	}
	return out, nil
}

// OpenConsole opens the console stream of a domain's serial or console
// device by alias ("serial0"; empty means the first console), on a
// libvirt connection of its own, as `virsh console` does. With force it
// takes the console over from another client; without, a console in use
// fails with ErrConsoleBusy. The domain must be running.
func (c *Conn) OpenConsole(ctx context.Context, domain, device string, force bool) (net.Conn, error) {
	d, err := c.lookup(ctx, domain)
	if err != nil {
		return nil, err
	}
	if d.ID <= 0 {
		return nil, fmt.Errorf("domain %s is not running", d.Name)
	}
	return openConsole(ctx, c.t, d, device, force)
}

func uuidString(u libvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

func parseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || (len(s) != 32 && len(s) != 36) {
		return u, false
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return u, false
	}
	copy(u[:], b)
	return u, true
}
