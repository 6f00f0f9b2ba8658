package libvirtadmin

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
)

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
	picked := slices.DeleteFunc(slices.Clone(st.x.Devices), func(d domainxml.Device) bool { return !want(d.Kind) })
	if len(picked) == 0 {
		return nil, noConsoles(st.dom.Name, kinds)
	}
	meta := &domainxml.Metadata{}
	if st.x.Metadata != nil {
		meta.Consoles = slices.Clone(st.x.Metadata.Consoles)
	}
	var created []libvirt.Secret
	rollback := func() {
		for _, s := range created {
			c.l.SecretUndefine(s)
		}
	}
	for _, dev := range picked {
		s, err := c.enableOne(ctx, st.dom, meta, dev, host, insecure)
		if err != nil {
			rollback()
			return nil, err
		}
		if s != nil {
			created = append(created, *s)
		}
	}
	if err := c.writeMetadata(st, meta); err != nil {
		rollback()
		return nil, err
	}
	return c.enabled(ctx, st.dom, want)
}

func noConsoles(domain string, kinds []protocols.Kind) error {
	what := "vnc, spice, serial or console"
	if len(kinds) > 0 {
		var s []string
		for _, k := range kinds {
			s = append(s, string(k))
		}
		what = strings.Join(s, " or ")
	}
	return fmt.Errorf("%w: domain %s has no %s device; add one (virsh edit) or pick another type", ErrNoConsoles, domain, what)
}

// enableOne makes meta's entry for dev: an existing one whose secret is
// still there keeps it, else a new secret is created and returned.
func (c *Conn) enableOne(ctx context.Context, dom libvirt.Domain, meta *domainxml.Metadata, dev domainxml.Device, host string, insecure bool) (*libvirt.Secret, error) {
	m := meta.Find(dev.Kind, dev.Index)
	if m != nil {
		if _, err := c.secretValue(m.Token); err == nil {
			m.Host, m.Insecure, m.Port = host, domainxml.YesNo(insecure), strconv.Itoa(dev.Index)
			return nil, nil
		}
		// The secret is gone: make a new one.
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := c.newSecret(dev, libvirtapi.UUIDString(dom.UUID))
	if err != nil {
		return nil, err
	}
	entry := domainxml.MetaConsole{Token: libvirtapi.UUIDString(s.UUID), Type: string(dev.Kind),
		Port: strconv.Itoa(dev.Index), Insecure: domainxml.YesNo(insecure), Host: host}
	if m != nil {
		entry.Record = m.Record // the operator's recording policy stays
		*m = entry
	} else {
		meta.Consoles = append(meta.Consoles, entry)
	}
	return &s, nil
}

// enabled lists dom's enabled consoles of the kinds want accepts.
func (c *Conn) enabled(ctx context.Context, dom libvirt.Domain, want func(protocols.Kind) bool) ([]Console, error) {
	all, err := c.Consoles(ctx, libvirtapi.UUIDString(dom.UUID), false)
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

func (c *Conn) newSecret(dev domainxml.Device, domUUID string) (libvirt.Secret, error) {
	b, _ := xml.Marshal(secretXML{Ephemeral: "no", Private: "no", Description: secretDescription(dev.Kind, dev.Index, domUUID)})
	s, err := c.l.SecretDefineXML(string(b), 0)
	if err != nil {
		return s, fmt.Errorf("create the secret for %s %d: %w", dev.Kind, dev.Index, c.rpcErr(err))
	}
	if err := c.l.SecretSetValue(s, []byte(resolver.NewToken()), 0); err != nil {
		c.l.SecretUndefine(s)
		return s, fmt.Errorf("set the secret for %s %d: %w", dev.Kind, dev.Index, c.rpcErr(err))
	}
	return s, nil
}

// writeMetadata writes (or with an empty meta removes) the metadata on the
// live domain if running and in its config if persistent.
func (c *Conn) writeMetadata(st *state, meta *domainxml.Metadata) error {
	var flags libvirt.DomainModificationImpact
	if st.x.Running() {
		flags |= libvirt.DomainAffectLive
	}
	if st.persistent {
		flags |= libvirt.DomainAffectConfig
	}
	var val libvirt.OptString
	if meta != nil && len(meta.Consoles) > 0 {
		s, err := meta.Marshal()
		if err != nil {
			return err
		}
		val = libvirt.OptString{s}
	}
	err := c.l.DomainSetMetadata(st.dom, int32(libvirt.DomainMetadataElement), val,
		libvirt.OptString{domainxml.MetadataKey}, libvirt.OptString{domainxml.Namespace}, flags)
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
	secrets := secretsOf(st.x.Metadata)
	// The config may reference other secrets than the live XML.
	if st.x.Running() && st.persistent {
		if raw, err := c.l.DomainGetXMLDesc(st.dom, libvirt.DomainXMLInactive); err == nil {
			if x, err := domainxml.Parse(raw); err == nil {
				secrets = append(secrets, secretsOf(x.Metadata)...)
			}
		}
	}
	if st.x.Metadata != nil || len(secrets) > 0 {
		if err := c.writeMetadata(st, nil); err != nil {
			return err
		}
	}
	secrets = append(secrets, c.leftSecrets(st.dom)...)
	slices.Sort(secrets)
	var errs []error
	for _, id := range slices.Compact(secrets) {
		if err := c.undefineSecret(id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func secretsOf(m *domainxml.Metadata) []string {
	var out []string
	if m != nil {
		for _, mc := range m.Consoles {
			out = append(out, mc.Token)
		}
	}
	return out
}

// leftSecrets returns the secrets of ours that name dom, which a failed
// run may have left behind.
func (c *Conn) leftSecrets(dom libvirt.Domain) []string {
	all, _, err := c.l.ConnectListAllSecrets(1, 0)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range all {
		x, err := c.l.SecretGetXMLDesc(s, 0)
		if err == nil && strings.Contains(x, "token for domain "+libvirtapi.UUIDString(dom.UUID)+"<") {
			out = append(out, libvirtapi.UUIDString(s.UUID))
		}
	}
	return out
}

// undefineSecret removes a secret; one that is gone already is fine.
func (c *Conn) undefineSecret(id string) error {
	u, ok := libvirtapi.ParseUUID(id)
	if !ok {
		return nil
	}
	s, err := c.l.SecretLookupByUUID(u)
	if err != nil {
		return nil
	}
	if err := c.l.SecretUndefine(s); err != nil {
		return fmt.Errorf("remove secret %s: %w", id, c.rpcErr(err))
	}
	return nil
}

// Rotate gives every enabled console of a domain a new token value. It
// rewrites the live metadata unchanged, so that resolvers watching the
// domain re-read the secrets at once.
func (c *Conn) Rotate(ctx context.Context, domain string) ([]Console, error) {
	st, err := c.read(ctx, domain)
	if err != nil {
		return nil, err
	}
	meta := st.x.Metadata
	if meta == nil || len(meta.Consoles) == 0 {
		return nil, fmt.Errorf("%w: domain %s has no console tokens; run enable first", ErrNotEnabled, st.dom.Name)
	}
	for _, m := range meta.Consoles {
		u, ok := libvirtapi.ParseUUID(m.Token)
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
	if st.x.Running() {
		// Only to raise a metadata-change event; the config is unchanged.
		live := &state{dom: st.dom, x: st.x}
		if err := c.writeMetadata(live, meta); err != nil {
			return nil, err
		}
	}
	return c.enabled(ctx, st.dom, func(protocols.Kind) bool { return true })
}
