// Package libvirtfake is an in-memory libvirtd for unit tests of the
// resolver and the admin operations: domains with live and config XML and
// metadata, secrets, lifecycle, metadata-change and device events, and
// connections that a test can cut, refuse or slow down. Its connections
// implement libvirtapi.Libvirt with go-libvirt's types and error codes, as
// far as those callers use them; it opens no console streams.
package libvirtfake

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// Hypervisor is the fake libvirtd: the state its connections share. The
// zero value is not usable; call New. Safe for concurrent use.
type Hypervisor struct {
	mu      sync.Mutex
	domains map[libvirt.UUID]*domain
	secrets map[libvirt.UUID]*secret
	conns   map[*Conn]struct{}
	lastID  int32
	refuse  error              // Connect fails with it while set
	quiet   bool               // events are dropped while set
	hook    func(string) error // see SetHook
}

type domain struct {
	name       string
	uuid       libvirt.UUID
	id         int32 // > 0 while running
	persistent bool
	devices    string // the inner XML of <devices>
	// metadata by namespace, of the running instance and of the config.
	live, config map[string]string
}

func (d *domain) ref() libvirt.Domain {
	id := d.id
	if id <= 0 {
		id = -1
	}
	return libvirt.Domain{Name: d.name, UUID: d.uuid, ID: id}
}

type secret struct {
	uuid  libvirt.UUID
	xml   string
	value []byte // nil until set
}

// New returns a hypervisor without domains or secrets.
func New() *Hypervisor {
	return &Hypervisor{
		domains: map[libvirt.UUID]*domain{},
		secrets: map[libvirt.UUID]*secret{},
		conns:   map[*Conn]struct{}{},
	}
}

var _ libvirtapi.Connector = (*Hypervisor)(nil).Connect

// Connect opens a connection, or fails with the error given to Refuse. It
// has the shape of libvirtapi.Connector; uri is not looked at.
func (h *Hypervisor) Connect(ctx context.Context, uri string) (libvirtapi.Libvirt, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refuse != nil {
		return nil, h.refuse
	}
	c := &Conn{h: h, closed: make(chan struct{})}
	h.conns[c] = struct{}{}
	return c, nil
}

// Refuse makes Connect fail with err (nil accepts connections again), as
// a libvirtd that is down.
func (h *Hypervisor) Refuse(err error) {
	h.mu.Lock()
	h.refuse = err
	h.mu.Unlock()
}

// CutAll ends every open connection, as libvirtd's restart does: their
// event channels close, Disconnected fires, calls fail.
func (h *Hypervisor) CutAll() {
	h.mu.Lock()
	conns := make([]*Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.Disconnect()
	}
}

// Conns returns how many connections are open.
func (h *Hypervisor) Conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// SetHook makes every call of every connection run hook(method) first,
// e.g. hook("SecretSetValue"), outside the hypervisor's lock; an error it
// returns fails the call. Tests use it to block a call at a chosen point
// or to fail it. Nil removes the hook.
func (h *Hypervisor) SetHook(hook func(method string) error) {
	h.mu.Lock()
	h.hook = hook
	h.mu.Unlock()
}

// Quiet drops events while on, as if libvirtd had not sent them.
func (h *Hypervisor) Quiet(on bool) {
	h.mu.Lock()
	h.quiet = on
	h.mu.Unlock()
}

// Define defines a persistent, stopped domain whose <devices> element
// holds devices (inner XML, e.g. `<graphics type='vnc' port='5901'/>`).
func (h *Hypervisor) Define(name, devices string) libvirt.Domain {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := &domain{name: name, uuid: newUUID(), persistent: true, devices: devices,
		live: map[string]string{}, config: map[string]string{}}
	h.domains[d.uuid] = d
	h.lifecycle(d, libvirt.DomainEventDefined)
	return d.ref()
}

// Start starts a defined domain with a new ID (its live metadata is a
// copy of the config's) and returns it as now running.
func (h *Hypervisor) Start(dom libvirt.Domain) libvirt.Domain {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.mustDomain(dom)
	if d.id > 0 {
		panic(fmt.Sprintf("libvirtfake: domain %s is running already", d.name))
	}
	h.lastID++
	d.id = h.lastID
	d.live = maps.Clone(d.config)
	h.lifecycle(d, libvirt.DomainEventStarted)
	return d.ref()
}

// Destroy stops a running domain.
func (h *Hypervisor) Destroy(dom libvirt.Domain) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.mustDomain(dom)
	d.id, d.live = 0, map[string]string{}
	h.lifecycle(d, libvirt.DomainEventStopped)
}

// Undefine removes a stopped domain.
func (h *Hypervisor) Undefine(dom libvirt.Domain) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.mustDomain(dom)
	delete(h.domains, d.uuid)
	h.lifecycle(d, libvirt.DomainEventUndefined)
}

// SetSecretValue changes a secret's value behind the callers' backs: no
// event tells them, as with `virsh secret-set-value`.
func (h *Hypervisor) SetSecretValue(uuid libvirt.UUID, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.secrets[uuid]
	if !ok {
		panic("libvirtfake: no such secret")
	}
	s.value = []byte(value)
}

// Secrets returns how many secrets are defined.
func (h *Hypervisor) Secrets() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.secrets)
}

// Metadata returns the metadata element of namespace ns of a domain, live
// or from its config, as DomainGetMetadata would.
func (h *Hypervisor) Metadata(dom libvirt.Domain, ns string, live bool) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.mustDomain(dom)
	if live {
		return d.live[ns]
	}
	return d.config[ns]
}

func (h *Hypervisor) mustDomain(dom libvirt.Domain) *domain {
	d, ok := h.domains[dom.UUID]
	if !ok {
		panic(fmt.Sprintf("libvirtfake: no domain %s", dom.Name))
	}
	return d
}

func newUUID() libvirt.UUID {
	var u libvirt.UUID
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// Errors as libvirtd reports them (the codes are what callers look at).
func errNoDomain(what string) error {
	return libvirt.Error{Code: uint32(libvirt.ErrNoDomain), Message: "Domain not found: " + what}
}

func errNoSecret(what string) error {
	return libvirt.Error{Code: uint32(libvirt.ErrNoSecret), Message: "Secret not found: " + what}
}

var (
	errNotRunning = libvirt.Error{Code: uint32(libvirt.ErrOperationInvalid), Message: "Requested operation is not valid: domain is not running"}
	errNoMetadata = libvirt.Error{Code: uint32(libvirt.ErrNoDomainMetadata), Message: "metadata not found: Requested metadata element is not present"}
)

// render returns a domain's XML: the live one while running unless
// inactive, else the config. Metadata elements get their namespace as the
// default one, which parses as libvirt's prefixed form does.
func (d *domain) render(inactive bool) string {
	var b strings.Builder
	meta := d.config
	if d.id > 0 && !inactive {
		fmt.Fprintf(&b, "<domain type='qemu' id='%d'>", d.id)
		meta = d.live
	} else {
		b.WriteString("<domain type='qemu'>")
	}
	fmt.Fprintf(&b, "<name>%s</name><uuid>%s</uuid>", d.name, uuidString(d.uuid))
	if len(meta) > 0 {
		b.WriteString("<metadata>")
		for _, ns := range slices.Sorted(maps.Keys(meta)) {
			b.WriteString(withNamespace(meta[ns], ns))
		}
		b.WriteString("</metadata>")
	}
	fmt.Fprintf(&b, "<devices>%s</devices></domain>", d.devices)
	return b.String()
}

// withNamespace puts xmlns="ns" on the root element of elem.
func withNamespace(elem, ns string) string {
	elem = strings.TrimSpace(elem)
	end := strings.IndexAny(elem, " />")
	if !strings.HasPrefix(elem, "<") || end < 0 {
		return elem
	}
	return elem[:end] + ` xmlns="` + ns + `"` + elem[end:]
}

func uuidString(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// closedErr is what a call on a closed connection returns: go-libvirt's
// socket answers EINVAL, and a call the cut interrupted ErrInterrupted.
func closedErr(interrupted bool) error {
	if interrupted {
		return libvirt.ErrInterrupted
	}
	return syscall.EINVAL
}
