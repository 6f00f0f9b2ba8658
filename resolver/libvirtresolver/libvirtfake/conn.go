package libvirtfake

import (
	"encoding/hex"
	"encoding/xml"
	"slices"
	"strings"
	"sync"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

// Conn is one connection to the fake libvirtd.
type Conn struct {
	h      *Hypervisor
	closed chan struct{}
	once   sync.Once
	subs   []*subscription // guarded by h.mu
	wg     sync.WaitGroup  // the subscriptions' forwarders
}

var _ libvirtapi.Libvirt = (*Conn)(nil)

// call runs the hook, then f under the hypervisor's lock, unless the
// connection is closed before or while the hook runs.
func (c *Conn) call(method string, f func(h *Hypervisor) error) error {
	if !c.IsConnected() {
		return closedErr(false)
	}
	c.h.mu.Lock()
	hook := c.h.hook
	c.h.mu.Unlock()
	if hook != nil {
		if err := hook(method); err != nil {
			return err
		}
	}
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	if !c.IsConnected() {
		return closedErr(true)
	}
	return f(c.h)
}

// Disconnected implements libvirtapi.Libvirt.
func (c *Conn) Disconnected() <-chan struct{} { return c.closed }

// IsConnected implements libvirtapi.Libvirt.
func (c *Conn) IsConnected() bool {
	select {
	case <-c.closed:
		return false
	default:
		return true
	}
}

// Disconnect implements libvirtapi.Libvirt: it closes the connection and
// its event channels, and returns once they are closed.
func (c *Conn) Disconnect() error {
	c.once.Do(func() {
		c.h.mu.Lock()
		close(c.closed)
		delete(c.h.conns, c)
		c.subs = nil
		c.h.mu.Unlock()
	})
	c.wg.Wait()
	return nil
}

func (h *Hypervisor) domain(dom libvirt.Domain) (*domain, error) {
	d, ok := h.domains[dom.UUID]
	if !ok {
		return nil, errNoDomain("no domain with matching uuid '" + uuidString(dom.UUID) + "' (" + dom.Name + ")")
	}
	return d, nil
}

// ConnectListAllDomains implements libvirtapi.Libvirt; of the flags only
// ConnectListDomainsActive is looked at. Domains come sorted by name.
func (c *Conn) ConnectListAllDomains(_ int32, flags libvirt.ConnectListAllDomainsFlags) (out []libvirt.Domain, _ uint32, err error) {
	err = c.call("ConnectListAllDomains", func(h *Hypervisor) error {
		for _, d := range h.domains {
			if flags&libvirt.ConnectListDomainsActive == 0 || d.id > 0 {
				out = append(out, d.ref())
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b libvirt.Domain) int { return strings.Compare(a.Name, b.Name) })
	return out, uint32(len(out)), err
}

// DomainLookupByUUID implements libvirtapi.Libvirt.
func (c *Conn) DomainLookupByUUID(uuid libvirt.UUID) (out libvirt.Domain, err error) {
	err = c.call("DomainLookupByUUID", func(h *Hypervisor) error {
		d, err := h.domain(libvirt.Domain{UUID: uuid})
		if err == nil {
			out = d.ref()
		}
		return err
	})
	return out, err
}

// DomainLookupByID implements libvirtapi.Libvirt.
func (c *Conn) DomainLookupByID(id int32) (out libvirt.Domain, err error) {
	err = c.call("DomainLookupByID", func(h *Hypervisor) error {
		for _, d := range h.domains {
			if d.id > 0 && d.id == id {
				out = d.ref()
				return nil
			}
		}
		return errNoDomain("no domain with matching id")
	})
	return out, err
}

// DomainLookupByName implements libvirtapi.Libvirt.
func (c *Conn) DomainLookupByName(name string) (out libvirt.Domain, err error) {
	err = c.call("DomainLookupByName", func(h *Hypervisor) error {
		for _, d := range h.domains {
			if d.name == name {
				out = d.ref()
				return nil
			}
		}
		return errNoDomain("no domain with matching name '" + name + "'")
	})
	return out, err
}

// DomainGetXMLDesc implements libvirtapi.Libvirt; of the flags only
// DomainXMLInactive is looked at.
func (c *Conn) DomainGetXMLDesc(dom libvirt.Domain, flags libvirt.DomainXMLFlags) (out string, err error) {
	err = c.call("DomainGetXMLDesc", func(h *Hypervisor) error {
		d, err := h.domain(dom)
		if err == nil {
			out = d.render(flags&libvirt.DomainXMLInactive != 0)
		}
		return err
	})
	return out, err
}

// DomainIsPersistent implements libvirtapi.Libvirt.
func (c *Conn) DomainIsPersistent(dom libvirt.Domain) (out int32, err error) {
	err = c.call("DomainIsPersistent", func(h *Hypervisor) error {
		d, err := h.domain(dom)
		if err == nil && d.persistent {
			out = 1
		}
		return err
	})
	return out, err
}

// metadata returns the metadata maps of dom that flags address, as
// libvirt does: AffectCurrent (0) is live while running, else the config.
func (h *Hypervisor) metadata(dom libvirt.Domain, flags libvirt.DomainModificationImpact) (*domain, []map[string]string, error) {
	d, err := h.domain(dom)
	if err != nil {
		return nil, nil, err
	}
	maps, err := d.targets(flags)
	return d, maps, err
}

func (d *domain) targets(flags libvirt.DomainModificationImpact) ([]map[string]string, error) {
	if flags == libvirt.DomainAffectCurrent {
		if d.id > 0 {
			flags = libvirt.DomainAffectLive
		} else {
			flags = libvirt.DomainAffectConfig
		}
	}
	var out []map[string]string
	if flags&libvirt.DomainAffectLive != 0 {
		if d.id <= 0 {
			return nil, errNotRunning
		}
		out = append(out, d.live)
	}
	if flags&libvirt.DomainAffectConfig != 0 {
		out = append(out, d.config)
	}
	return out, nil
}

// DomainGetMetadata implements libvirtapi.Libvirt for element metadata.
func (c *Conn) DomainGetMetadata(dom libvirt.Domain, _ int32, uri libvirt.OptString, flags libvirt.DomainModificationImpact) (out string, err error) {
	err = c.call("DomainGetMetadata", func(h *Hypervisor) error {
		_, maps, err := h.metadata(dom, flags)
		if err != nil {
			return err
		}
		v, ok := maps[0][optString(uri)]
		if !ok {
			return errNoMetadata
		}
		out = v
		return nil
	})
	return out, err
}

// DomainSetMetadata implements libvirtapi.Libvirt for element metadata:
// an empty value removes the element. Every call raises a metadata-change
// event, as libvirt does.
func (c *Conn) DomainSetMetadata(dom libvirt.Domain, _ int32, metadata, _, uri libvirt.OptString, flags libvirt.DomainModificationImpact) error {
	return c.call("DomainSetMetadata", func(h *Hypervisor) error {
		d, maps, err := h.metadata(dom, flags)
		if err != nil {
			return err
		}
		ns, v := optString(uri), optString(metadata)
		for _, m := range maps {
			if v == "" {
				delete(m, ns)
			} else {
				m[ns] = v
			}
		}
		h.emit(libvirt.DomainEventIDMetadataChange, &libvirt.DomainEventCallbackMetadataChangeMsg{
			Dom: d.ref(), Type: int32(libvirt.DomainMetadataElement), Nsuri: uri})
		return nil
	})
}

func optString(s libvirt.OptString) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func (h *Hypervisor) secret(s libvirt.Secret) (*secret, error) {
	x, ok := h.secrets[s.UUID]
	if !ok {
		return nil, errNoSecret("no secret with matching uuid '" + uuidString(s.UUID) + "'")
	}
	return x, nil
}

// ConnectListAllSecrets implements libvirtapi.Libvirt.
func (c *Conn) ConnectListAllSecrets(int32, libvirt.ConnectListAllSecretsFlags) (out []libvirt.Secret, _ uint32, err error) {
	err = c.call("ConnectListAllSecrets", func(h *Hypervisor) error {
		for u := range h.secrets {
			out = append(out, libvirt.Secret{UUID: u})
		}
		return nil
	})
	return out, uint32(len(out)), err
}

// SecretLookupByUUID implements libvirtapi.Libvirt.
func (c *Conn) SecretLookupByUUID(uuid libvirt.UUID) (out libvirt.Secret, err error) {
	err = c.call("SecretLookupByUUID", func(h *Hypervisor) error {
		_, err := h.secret(libvirt.Secret{UUID: uuid})
		out = libvirt.Secret{UUID: uuid}
		return err
	})
	return out, err
}

// SecretGetValue implements libvirtapi.Libvirt.
func (c *Conn) SecretGetValue(s libvirt.Secret, _ uint32) (out []byte, err error) {
	err = c.call("SecretGetValue", func(h *Hypervisor) error {
		x, err := h.secret(s)
		if err != nil {
			return err
		}
		if x.value == nil {
			return errNoSecret("secret '" + uuidString(s.UUID) + "' does not have a value")
		}
		out = slices.Clone(x.value)
		return nil
	})
	return out, err
}

// SecretSetValue implements libvirtapi.Libvirt. Like libvirtd it raises
// no event that go-libvirt routes.
func (c *Conn) SecretSetValue(s libvirt.Secret, value []byte, _ uint32) error {
	return c.call("SecretSetValue", func(h *Hypervisor) error {
		x, err := h.secret(s)
		if err == nil {
			x.value = slices.Clone(value)
		}
		return err
	})
}

// SecretDefineXML implements libvirtapi.Libvirt: a secret with the XML's
// <uuid>, or a new UUID.
func (c *Conn) SecretDefineXML(def string, _ uint32) (out libvirt.Secret, err error) {
	err = c.call("SecretDefineXML", func(h *Hypervisor) error {
		var parsed struct {
			UUID string `xml:"uuid"`
		}
		if err := xml.Unmarshal([]byte(def), &parsed); err != nil {
			return libvirt.Error{Code: uint32(libvirt.ErrXMLError), Message: "XML error: " + err.Error()}
		}
		u := newUUID()
		if parsed.UUID != "" {
			var ok bool
			if u, ok = parseUUID(parsed.UUID); !ok {
				return libvirt.Error{Code: uint32(libvirt.ErrXMLError), Message: "XML error: bad uuid"}
			}
		}
		if _, ok := h.secrets[u]; !ok {
			h.secrets[u] = &secret{uuid: u}
		}
		h.secrets[u].xml = def
		out = libvirt.Secret{UUID: u}
		return nil
	})
	return out, err
}

// SecretUndefine implements libvirtapi.Libvirt.
func (c *Conn) SecretUndefine(s libvirt.Secret) error {
	return c.call("SecretUndefine", func(h *Hypervisor) error {
		if _, err := h.secret(s); err != nil {
			return err
		}
		delete(h.secrets, s.UUID)
		return nil
	})
}

// SecretGetXMLDesc implements libvirtapi.Libvirt: the XML it was defined
// with.
func (c *Conn) SecretGetXMLDesc(s libvirt.Secret, _ uint32) (out string, err error) {
	err = c.call("SecretGetXMLDesc", func(h *Hypervisor) error {
		x, err := h.secret(s)
		if err == nil {
			out = x.xml
		}
		return err
	})
	return out, err
}

func parseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(u) {
		return u, false
	}
	copy(u[:], b)
	return u, true
}
