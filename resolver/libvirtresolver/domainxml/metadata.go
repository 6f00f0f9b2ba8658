// Package domainxml reads what the console code needs from libvirt's
// domain XML: the console devices (VNC and SPICE graphics, serials,
// consoles) with where each is reached, and the console-proxy metadata
// (PROTOCOLS.md §1) that names the secret holding each console's token.
// It does no I/O.
package domainxml

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"

	"github.com/virtconsole/virtconsole/protocols"
)

// Namespace is the XML namespace of the console-proxy domain metadata
// (PROTOCOLS.md §1), shared with the original libvirt-console-proxy.
const Namespace = "http://libvirt.org/schemas/console-proxy/1.0"

// MetadataKey is the namespace prefix the metadata is written with.
const MetadataKey = "lcp"

// Metadata is the <consoles> element. Its XMLName carries no namespace
// so that it parses both the bare element virDomainGetMetadata returns
// and a prefixed one; ParseMetadata picks ours out of a domain's
// <metadata> by namespace.
type Metadata struct {
	XMLName  xml.Name      `xml:"consoles"`
	Consoles []MetaConsole `xml:"console"`
}

// MetaConsole is one <console token=… type=… port=… insecure=… host=…
// record=…/>. token is the UUID of the libvirt secret whose value clients
// present; port is the index of the device among those of its type;
// record (virtconsole's own, optional) is the console's recording policy,
// off, on or required, overriding the proxy's --record.
type MetaConsole struct {
	Token    string `xml:"token,attr"`
	Type     string `xml:"type,attr"`
	Port     string `xml:"port,attr"`
	Insecure string `xml:"insecure,attr,omitempty"`
	Host     string `xml:"host,attr,omitempty"`
	Record   string `xml:"record,attr,omitempty"`
}

// RecordPolicy is the record attribute's policy.
func (m MetaConsole) RecordPolicy() (protocols.RecordPolicy, error) {
	return protocols.ParseRecordPolicy(m.Record)
}

// Kind is the console type.
func (m MetaConsole) Kind() (protocols.Kind, error) { return protocols.ParseKind(m.Type) }

// Index is the device index (port; empty means 0).
func (m MetaConsole) Index() (int, error) {
	if m.Port == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(m.Port)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("port=%q: want a device index (0, 1, …)", m.Port)
	}
	return n, nil
}

// IsInsecure reports whether the console allows cleartext.
func (m MetaConsole) IsInsecure() bool {
	switch strings.ToLower(m.Insecure) {
	case "yes", "true", "1", "on":
		return true
	}
	return false
}

// ParseMetadata extracts our <consoles> element from the inner XML of a
// domain's <metadata>. It returns nil when there is none.
func ParseMetadata(inner string) (*Metadata, error) {
	if strings.TrimSpace(inner) == "" || !strings.Contains(inner, Namespace) {
		return nil, nil
	}
	var md struct {
		Consoles []Metadata `xml:"http://libvirt.org/schemas/console-proxy/1.0 consoles"`
	}
	if err := xml.Unmarshal([]byte("<metadata>"+inner+"</metadata>"), &md); err != nil {
		return nil, fmt.Errorf("console-proxy metadata: %w", err)
	}
	if len(md.Consoles) == 0 {
		return nil, nil
	}
	return &md.Consoles[0], nil
}

// Marshal returns the element as DomainSetMetadata wants it (no
// namespace: libvirt adds it with the key as prefix).
func (m *Metadata) Marshal() (string, error) {
	out := Metadata{Consoles: m.Consoles}
	b, err := xml.Marshal(out)
	return string(b), err
}

// YesNo is the metadata's spelling of a boolean.
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// Find returns the entry of the console of kind and index, or nil.
func (m *Metadata) Find(kind protocols.Kind, index int) *MetaConsole {
	if m == nil {
		return nil
	}
	for i := range m.Consoles {
		c := &m.Consoles[i]
		k, err1 := c.Kind()
		n, err2 := c.Index()
		if err1 == nil && err2 == nil && k == kind && n == index {
			return c
		}
	}
	return nil
}
