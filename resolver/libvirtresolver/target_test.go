package libvirtresolver

import (
	"fmt"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/virtconsole/virtconsole/protocols"
)

// Unit tests of the pure functions: target rules on live-XML fixtures
// (every branch, including listen addresses a test libvirtd cannot
// produce), metadata parsing, addresses and URIs.

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
	var def libvirtxml.Domain
	if err := def.Unmarshal(fixtureXML); err != nil {
		t.Fatal(err)
	}
	local, _ := parseURI("qemu:///system", &options{})
	remote, _ := parseURI("qemu+tcp://hv1.example/system", &options{})
	devs := devices(&def)
	tests := []struct {
		name     string
		kind     protocols.Kind
		index    int
		host     string
		insecure bool
		lt       *target
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
			dev, ok := findDevice(devs, tt.kind, tt.index)
			if !ok {
				t.Fatalf("no %s %d", tt.kind, tt.index)
			}
			got, err := deviceTarget(dev, tt.host, tt.insecure, tt.lt.host)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameTarget(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if _, ok := findDevice(devs, protocols.KindSerial, 5); ok {
		t.Error("serial 5 found")
	}
	// pty chardevs are reached through the console stream, nothing else.
	for _, dev := range devs {
		want := dev.kind.IsText() && (dev.alias == "serial0" || dev.alias == "console1")
		if dev.stream() != want {
			t.Errorf("%s %d (%s): stream() = %v", dev.kind, dev.index, dev.describe(), dev.stream())
		}
	}
}

func TestDomainMetadata(t *testing.T) {
	var def libvirtxml.Domain
	if err := def.Unmarshal(fixtureXML); err != nil {
		t.Fatal(err)
	}
	m, err := domainMetadata(def.Metadata.XML)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || len(m.Consoles) != 2 {
		t.Fatalf("got %+v", m)
	}
	c := m.Consoles[0]
	if k, _ := c.kind(); k != protocols.KindSerial || c.Token != "0b6a3c1e-1111-4222-8333-444455556666" || !c.insecure() || c.Host != "hv.example" {
		t.Errorf("console 0: %+v", c)
	}
	if n, _ := c.index(); n != 1 {
		t.Errorf("index %d", n)
	}
	if m.Consoles[1].insecure() {
		t.Error("insecure by default")
	}
	// Only foreign metadata: none of ours.
	if m, err := domainMetadata(`<x:consoles xmlns:x="http://example.com/other"><x:console token="t" type="vnc"/></x:consoles>`); err != nil || m != nil {
		t.Errorf("foreign metadata: %+v, %v", m, err)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	in := &metaConsoles{Consoles: []metaConsole{{Token: "u1", Type: "vnc", Port: "0", Insecure: "no"}, {Token: "u2", Type: "serial", Port: "2", Insecure: "yes", Host: "h"}}}
	s, err := in.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(s, "xmlns") || !strings.HasPrefix(s, "<consoles>") {
		t.Errorf("marshal: %s", s)
	}
	// libvirt stores it as <lcp:consoles xmlns:lcp=NS>…; emulate that.
	stored := strings.NewReplacer("<console ", "<lcp:console ", "</console>", "</lcp:console>", "</consoles>", "</lcp:consoles>",
		"<consoles>", `<lcp:consoles xmlns:lcp="`+Namespace+`">`).Replace(s)
	out, err := domainMetadata(stored)
	if err != nil || out == nil || len(out.Consoles) != 2 || out.Consoles[1] != in.Consoles[1] {
		t.Fatalf("round trip: %+v, %v (stored %s)", out, err, stored)
	}
	if _, err := (metaConsole{Port: "x"}).index(); err == nil {
		t.Error("bad port accepted")
	}
}

func TestUUID(t *testing.T) {
	u, ok := parseUUID("6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b")
	if !ok || uuidString(u) != "6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b" {
		t.Errorf("round trip: %v %s", ok, uuidString(u))
	}
	if u2, ok := parseUUID("6f1c0f5e8a7e4b5e9a430c1d2e3f4a5b"); !ok || u2 != u {
		t.Error("dashless UUID")
	}
	for _, bad := range []string{"myvm", "12", "6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5", "zf1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b"} {
		if _, ok := parseUUID(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseURI(t *testing.T) {
	for _, tt := range []struct{ uri, host, typ string }{
		{"", "127.0.0.1", "*dialers.Local"},
		{"qemu:///system", "127.0.0.1", "*dialers.Local"},
		{"qemu+unix:///system?socket=/tmp/s", "127.0.0.1", "*dialers.Local"},
		{"qemu+tcp://hv1:1234/system", "hv1", "*dialers.Remote"},
		{"qemu+tls://hv2/system", "hv2", "*dialers.TLS"},
		{"qemu://hv3/system", "hv3", "*dialers.TLS"},
		{"qemu+ssh://root@hv4/system", "hv4", "*libvirtresolver.sshDialer"},
	} {
		lt, err := parseURI(tt.uri, &options{})
		if err != nil {
			t.Errorf("%s: %v", tt.uri, err)
			continue
		}
		if lt.host != tt.host || typeName(lt.dialer) != tt.typ {
			t.Errorf("%s: host %q dialer %s", tt.uri, lt.host, typeName(lt.dialer))
		}
	}
	// The ssh transport's parameters.
	for uri, want := range map[string]sshDialer{
		"qemu+ssh://root@hv4/system": {addr: "hv4:22", user: "root", socket: remoteSocket},
		"qemu+ssh://op@[2001:db8::1]:2222/system?keyfile=/k&known_hosts=/kh&socket=/s&no_verify=1": {
			addr: "[2001:db8::1]:2222", user: "op", keyFile: "/k", knownHosts: "/kh", socket: "/s", noVerify: true},
	} {
		lt, err := parseURI(uri, &options{})
		if err != nil {
			t.Fatal(err)
		}
		got := *lt.dialer.(*sshDialer)
		got.timeout = 0
		if got != want {
			t.Errorf("%s: %+v, want %+v", uri, got, want)
		}
	}
	for _, bad := range []string{"qemu+carrier-pigeon://x/system", "not a uri", "qemu+tls://h/system?no_verify=maybe"} {
		if _, err := parseURI(bad, &options{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
