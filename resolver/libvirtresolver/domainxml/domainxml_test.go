package domainxml

import (
	"reflect"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/protocols"
)

// Unit tests on a live-XML fixture: every target rule (including listen
// addresses a test libvirtd cannot produce) and the metadata.

const fixtureXML = `<domain type='qemu' id='7'>
  <name>fx</name>
  <uuid>6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b</uuid>
  <metadata>
    <other:consoles xmlns:other="http://example.com/other"><other:console token="x" type="vnc"/></other:consoles>
    <lcp:consoles xmlns:lcp="http://libvirt.org/schemas/console-proxy/1.0">
      <lcp:console token="0b6a3c1e-1111-4222-8333-444455556666" type="serial" port="1" insecure="yes" host="hv.example"/>
      <lcp:console token="0b6a3c1e-1111-4222-8333-444455556667" type="spice" port="0"/>
    </lcp:consoles>
  </metadata>
  <devices>
    <graphics type='vnc' port='5901' autoport='yes' listen='0.0.0.0' passwd='pw'>
      <listen type='address' address='0.0.0.0'/>
    </graphics>
    <graphics type='vnc' socket='/run/vnc.sock'/>
    <graphics type='spice' port='5902' tlsPort='5903' autoport='yes' passwd='sp'>
      <listen type='address' address='192.0.2.7'/>
    </graphics>
    <graphics type='spice' port='5904' autoport='yes' listen='127.0.0.1'/>
    <serial type='pty'><source path='/dev/pts/3'/><target port='0'/><alias name='serial0'/></serial>
    <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555' tls='yes'/><protocol type='raw'/><target port='1'/><alias name='serial1'/></serial>
    <serial type='tcp'><source mode='connect' host='10.0.0.1' service='4556'/><target port='2'/><alias name='serial2'/></serial>
    <serial type='file'><source path='/tmp/x'/><target port='3'/><alias name='serial3'/></serial>
    <serial type='tcp'><source mode='bind' host='::' service='4557' tls='no'/><target port='4'/><alias name='serial4'/></serial>
    <console type='pty' tty='/dev/pts/3'><source path='/dev/pts/3'/><target type='serial' port='0'/><alias name='serial0'/></console>
    <console type='pty'><source path='/dev/pts/4'/><target type='virtio' port='1'/><alias name='console1'/></console>
  </devices>
</domain>`

func TestDeviceTargets(t *testing.T) {
	x, err := Parse(fixtureXML)
	if err != nil {
		t.Fatal(err)
	}
	if x.ID != 7 || !x.Running() {
		t.Errorf("ID %d", x.ID)
	}
	const local, remote = "127.0.0.1", "hv1.example" // the hosts of qemu:/// and qemu+tcp://hv1.example/
	devs := x.Devices
	tests := []struct {
		name     string
		kind     protocols.Kind
		index    int
		host     string
		insecure bool
		lt       string
		want     protocols.Target
		err      string
	}{
		{"vnc wildcard listen, local URI", protocols.KindVNC, 0, "", false, local,
			protocols.Target{Kind: "vnc", Address: "127.0.0.1:5901", Password: "pw"}, ""},
		{"vnc wildcard listen, remote URI", protocols.KindVNC, 0, "", false, remote,
			protocols.Target{Kind: "vnc", Address: "hv1.example:5901", Password: "pw"}, ""},
		{"vnc metadata host wins", protocols.KindVNC, 0, "10.1.1.1", true, remote,
			protocols.Target{Kind: "vnc", Address: "10.1.1.1:5901", Password: "pw", Insecure: true}, ""},
		{"vnc on a unix socket", protocols.KindVNC, 1, "", false, local, protocols.Target{}, "unix socket"},
		{"spice TLS port, concrete listen", protocols.KindSPICE, 0, "", false, remote,
			protocols.Target{Kind: "spice", Address: "192.0.2.7:5903", Password: "sp"}, ""},
		{"spice insecure plain port", protocols.KindSPICE, 0, "", true, remote,
			protocols.Target{Kind: "spice", Address: "192.0.2.7:5902", Password: "sp", Insecure: true}, ""},
		{"spice without TLS port", protocols.KindSPICE, 1, "", false, local, protocols.Target{}, "no TLS port"},
		{"spice without TLS port, insecure", protocols.KindSPICE, 1, "", true, local,
			protocols.Target{Kind: "spice", Address: "127.0.0.1:5904", Insecure: true}, ""},
		{"serial pty", protocols.KindSerial, 0, "", false, local,
			protocols.Target{Kind: "serial"}, ""},
		{"serial tcp tls", protocols.KindSerial, 1, "", true, local,
			protocols.Target{Kind: "serial", Address: "127.0.0.1:4555"}, ""},
		{"serial tcp connect mode", protocols.KindSerial, 2, "", false, local, protocols.Target{}, "mode='connect'"},
		{"serial file", protocols.KindSerial, 3, "", false, local, protocols.Target{}, "file chardev"},
		{"serial tcp wildcard, remote", protocols.KindSerial, 4, "", true, remote,
			protocols.Target{Kind: "serial", Address: "hv1.example:4557", Insecure: true}, ""},
		{"console mirroring serial0", protocols.KindConsole, 0, "", false, local,
			protocols.Target{Kind: "console"}, ""},
		{"virtio console", protocols.KindConsole, 1, "", false, remote,
			protocols.Target{Kind: "console"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, ok := FindDevice(devs, tt.kind, tt.index)
			if !ok {
				t.Fatalf("no %s %d", tt.kind, tt.index)
			}
			got, err := dev.Target(tt.host, tt.insecure, tt.lt)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if _, ok := FindDevice(devs, protocols.KindSerial, 5); ok {
		t.Error("serial 5 found")
	}
	// pty chardevs are reached through the console stream, nothing else.
	for _, dev := range devs {
		want := dev.Kind.IsText() && (dev.Alias == "serial0" || dev.Alias == "console1")
		if dev.Stream() != want {
			t.Errorf("%s %d (%s): Stream() = %v", dev.Kind, dev.Index, dev.Describe(), dev.Stream())
		}
	}
}

func TestDomainMetadata(t *testing.T) {
	x, err := Parse(fixtureXML)
	if err != nil {
		t.Fatal(err)
	}
	m := x.Metadata
	if m == nil || len(m.Consoles) != 2 {
		t.Fatalf("got %+v", m)
	}
	c := m.Consoles[0]
	if k, _ := c.Kind(); k != protocols.KindSerial || c.Token != "0b6a3c1e-1111-4222-8333-444455556666" || !c.IsInsecure() || c.Host != "hv.example" {
		t.Errorf("console 0: %+v", c)
	}
	if n, _ := c.Index(); n != 1 {
		t.Errorf("index %d", n)
	}
	if m.Consoles[1].IsInsecure() {
		t.Error("insecure by default")
	}
	if f := m.Find(protocols.KindSPICE, 0); f == nil || f.Token != "0b6a3c1e-1111-4222-8333-444455556667" {
		t.Errorf("Find(spice, 0) = %+v", f)
	}
	if f := m.Find(protocols.KindSerial, 0); f != nil {
		t.Errorf("Find(serial, 0) = %+v", f)
	}
	// Only foreign metadata: none of ours.
	if m, err := ParseMetadata(`<x:consoles xmlns:x="http://example.com/other"><x:console token="t" type="vnc"/></x:consoles>`); err != nil || m != nil {
		t.Errorf("foreign metadata: %+v, %v", m, err)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	in := &Metadata{Consoles: []MetaConsole{{Token: "u1", Type: "vnc", Port: "0", Insecure: "no"}, {Token: "u2", Type: "serial", Port: "2", Insecure: "yes", Host: "h"}}}
	s, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "xmlns") || !strings.HasPrefix(s, "<consoles>") {
		t.Errorf("marshal: %s", s)
	}
	// libvirt stores it as <lcp:consoles xmlns:lcp=NS>…; emulate that.
	stored := strings.NewReplacer("<console ", "<lcp:console ", "</console>", "</lcp:console>", "</consoles>", "</lcp:consoles>",
		"<consoles>", `<lcp:consoles xmlns:lcp="`+Namespace+`">`).Replace(s)
	out, err := ParseMetadata(stored)
	if err != nil || out == nil || len(out.Consoles) != 2 || out.Consoles[1] != in.Consoles[1] {
		t.Fatalf("round trip: %+v, %v (stored %s)", out, err, stored)
	}
	if _, err := (MetaConsole{Port: "x"}).Index(); err == nil {
		t.Error("bad port accepted")
	}
}
