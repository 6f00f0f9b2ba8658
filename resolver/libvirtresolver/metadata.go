package libvirtresolver

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

// metaConsoles is the <consoles> element. Its XMLName carries no namespace
// so that it parses both the bare element virDomainGetMetadata returns
// and a prefixed one; domainMetadata picks ours out of a domain's
// <metadata> by namespace.
type metaConsoles struct {
	XMLName  xml.Name      `xml:"consoles"`
	Consoles []metaConsole `xml:"console"`
}

// metaConsole is one <console token=… type=… port=… insecure=… host=…/>.
// token is the UUID of the libvirt secret whose value clients present;
// port is the index of the device among those of its type.
type metaConsole struct {
	Token    string `xml:"token,attr"`
	Type     string `xml:"type,attr"`
	Port     string `xml:"port,attr"`
	Insecure string `xml:"insecure,attr,omitempty"`
	Host     string `xml:"host,attr,omitempty"`
}

func (m metaConsole) kind() (protocols.Kind, error) { return protocols.ParseKind(m.Type) }

func (m metaConsole) index() (int, error) {
	if m.Port == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(m.Port)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("port=%q: want a device index (0, 1, …)", m.Port)
	}
	return n, nil
}

func (m metaConsole) insecure() bool {
	switch strings.ToLower(m.Insecure) {
	case "yes", "true", "1", "on":
		return true
	}
	return false
}

// domainMetadata extracts our <consoles> element from the inner XML of a
// domain's <metadata>. It returns nil when there is none.
func domainMetadata(inner string) (*metaConsoles, error) {
	if strings.TrimSpace(inner) == "" || !strings.Contains(inner, Namespace) {
		return nil, nil
	}
	var md struct {
		Consoles []metaConsoles `xml:"http://libvirt.org/schemas/console-proxy/1.0 consoles"`
	}
	if err := xml.Unmarshal([]byte("<metadata>"+inner+"</metadata>"), &md); err != nil {
		return nil, fmt.Errorf("console-proxy metadata: %w", err)
	}
	if len(md.Consoles) == 0 {
		return nil, nil
	}
	return &md.Consoles[0], nil
}

// marshal returns the element as DomainSetMetadata wants it (no
// namespace: libvirt adds it with the key as prefix).
func (m *metaConsoles) marshal() (string, error) {
	out := metaConsoles{Consoles: m.Consoles}
	b, err := xml.Marshal(out)
	return string(b), err
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
