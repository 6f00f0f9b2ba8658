package domainxml

import (
	"fmt"
	"net"
	"strconv"

	"libvirt.org/go/libvirtxml"

	"github.com/virtconsole/virtconsole/protocols"
)

// Device is one console-capable device of a domain: a VNC or SPICE
// <graphics>, a <serial> or a <console>, with its index among the devices
// of its kind (the metadata's port attribute).
type Device struct {
	Kind  protocols.Kind
	Index int
	// Alias names the device in libvirt ("serial0"); set for serials
	// and consoles, which a console stream opens by it.
	Alias   string
	vnc     *libvirtxml.DomainGraphicVNC
	spice   *libvirtxml.DomainGraphicSpice
	chardev *libvirtxml.DomainChardevSource
}

// Devices lists the console devices of a domain, in the order of its XML.
func Devices(d *libvirtxml.Domain) []Device {
	if d == nil || d.Devices == nil {
		return nil
	}
	var out []Device
	nv, ns := 0, 0
	for _, g := range d.Devices.Graphics {
		switch {
		case g.VNC != nil:
			out = append(out, Device{Kind: protocols.KindVNC, Index: nv, vnc: g.VNC})
			nv++
		case g.Spice != nil:
			out = append(out, Device{Kind: protocols.KindSPICE, Index: ns, spice: g.Spice})
			ns++
		}
	}
	for i, s := range d.Devices.Serials {
		dev := Device{Kind: protocols.KindSerial, Index: i, chardev: s.Source, Alias: "serial" + strconv.Itoa(i)}
		if s.Alias != nil && s.Alias.Name != "" {
			dev.Alias = s.Alias.Name
		}
		out = append(out, dev)
	}
	for i, c := range d.Devices.Consoles {
		dev := Device{Kind: protocols.KindConsole, Index: i, chardev: c.Source, Alias: "console" + strconv.Itoa(i)}
		if c.Alias != nil && c.Alias.Name != "" {
			dev.Alias = c.Alias.Name
		}
		out = append(out, dev)
	}
	return out
}

// FindDevice returns the device of kind and index.
func FindDevice(devs []Device, kind protocols.Kind, index int) (Device, bool) {
	for _, d := range devs {
		if d.Kind == kind && d.Index == index {
			return d, true
		}
	}
	return Device{}, false
}

// Describe names the device's backend for listings, e.g. "pty" or
// "tcp 127.0.0.1:4555 tls".
func (d Device) Describe() string {
	switch {
	case d.vnc != nil:
		return "vnc"
	case d.spice != nil:
		return "spice"
	case d.chardev == nil:
		return "pty"
	case d.chardev.TCP != nil:
		s := "tcp " + net.JoinHostPort(d.chardev.TCP.Host, d.chardev.TCP.Service)
		if d.chardev.TCP.TLS == "yes" {
			s += " tls"
		}
		return s
	case d.chardev.Pty != nil:
		return "pty"
	}
	return chardevType(d.chardev)
}

func chardevType(s *libvirtxml.DomainChardevSource) string {
	switch {
	case s.Null != nil:
		return "null"
	case s.VC != nil:
		return "vc"
	case s.Pty != nil:
		return "pty"
	case s.Dev != nil:
		return "dev"
	case s.File != nil:
		return "file"
	case s.Pipe != nil:
		return "pipe"
	case s.StdIO != nil:
		return "stdio"
	case s.UDP != nil:
		return "udp"
	case s.TCP != nil:
		return "tcp"
	case s.UNIX != nil:
		return "unix"
	case s.SpiceVMC != nil:
		return "spicevmc"
	case s.SpicePort != nil:
		return "spiceport"
	}
	return "unknown"
}

// concrete reports whether a listen address names one host, as opposed
// to a wildcard that says nothing about how to reach the hypervisor.
func concrete(addr string) bool {
	switch addr {
	case "", "0.0.0.0", "::", "[::]", "*":
		return false
	}
	return true
}

func graphicsListen(attr string, listeners []libvirtxml.DomainGraphicListener) string {
	if concrete(attr) {
		return attr
	}
	for _, l := range listeners {
		if l.Address != nil && concrete(l.Address.Address) {
			return l.Address.Address
		}
	}
	return ""
}

// pickHost applies the listen-address rules: the metadata's host, else a
// concrete listen address, else the libvirt host (127.0.0.1 for a local
// URI).
func pickHost(metaHost, listen, libvirtHost string) string {
	switch {
	case metaHost != "":
		return metaHost
	case concrete(listen):
		return listen
	}
	return libvirtHost
}

// Stream reports whether dev is reached through libvirt's console stream
// (a pty chardev, libvirt's default) rather than at a network address.
func (d Device) Stream() bool {
	return d.Kind.IsText() && (d.chardev == nil || d.chardev.Pty != nil)
}

// Target computes where dev, a device of a running domain, is reached.
// metaHost and insecure come from the device's metadata entry;
// libvirtHost is the hypervisor's address as the libvirt URI names it.
// For a Stream device it returns the kind only: the caller adds the
// stream's address and dial.
func (dev Device) Target(metaHost string, insecure bool, libvirtHost string) (protocols.Target, error) {
	t := protocols.Target{Kind: dev.Kind, Insecure: insecure}
	switch {
	case dev.vnc != nil:
		return dev.vncTarget(t, metaHost, libvirtHost)
	case dev.spice != nil:
		return dev.spiceTarget(t, metaHost, libvirtHost)
	case dev.Stream():
		// Secured by the libvirt connection it runs on.
		return protocols.Target{Kind: dev.Kind}, nil
	case dev.chardev.TCP != nil:
		return dev.tcpTarget(t, metaHost, libvirtHost)
	}
	return t, fmt.Errorf("%s %d is a %s chardev; only tcp and pty ones can be reached", dev.Kind, dev.Index, chardevType(dev.chardev))
}

func (dev Device) vncTarget(t protocols.Target, metaHost, libvirtHost string) (protocols.Target, error) {
	g := dev.vnc
	if g.Socket != "" && g.Port <= 0 {
		return t, fmt.Errorf("vnc %d listens on a unix socket, which the proxy cannot reach; give it a TCP listen address", dev.Index)
	}
	if g.Port <= 0 {
		return t, fmt.Errorf("vnc %d has no port yet (domain not running?)", dev.Index)
	}
	t.Address = net.JoinHostPort(pickHost(metaHost, graphicsListen(g.Listen, g.Listeners), libvirtHost), strconv.Itoa(g.Port))
	t.Password = g.Passwd
	return t, nil
}

// spiceTarget is the TLS port, or the plain one for a console enabled as
// insecure.
func (dev Device) spiceTarget(t protocols.Target, metaHost, libvirtHost string) (protocols.Target, error) {
	g := dev.spice
	port := g.TLSPort
	switch {
	case t.Insecure && g.Port > 0:
		port = g.Port
	case port > 0:
		t.Insecure = false // only the TLS port exists
	case g.Port > 0:
		return t, fmt.Errorf("spice %d has no TLS port; set spice_tls in qemu.conf, or enable the console as insecure", dev.Index)
	default:
		return t, fmt.Errorf("spice %d has no port yet (domain not running?)", dev.Index)
	}
	t.Address = net.JoinHostPort(pickHost(metaHost, graphicsListen(g.Listen, g.Listeners), libvirtHost), strconv.Itoa(port))
	t.Password = g.Passwd
	return t, nil
}

// tcpTarget is a TCP server chardev's address; one with TLS is secure
// whatever the metadata says.
func (dev Device) tcpTarget(t protocols.Target, metaHost, libvirtHost string) (protocols.Target, error) {
	tcp := dev.chardev.TCP
	if tcp.Mode == "connect" {
		return t, fmt.Errorf("%s %d is a TCP client chardev (mode='connect'); only mode='bind' can be reached", dev.Kind, dev.Index)
	}
	if _, err := strconv.Atoi(tcp.Service); err != nil {
		return t, fmt.Errorf("%s %d: TCP service %q is not a port number", dev.Kind, dev.Index, tcp.Service)
	}
	t.Address = net.JoinHostPort(pickHost(metaHost, tcp.Host, libvirtHost), tcp.Service)
	if tcp.TLS == "yes" {
		t.Insecure = false
	}
	return t, nil
}
