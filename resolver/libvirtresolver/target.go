package libvirtresolver

import (
	"fmt"
	"net"
	"strconv"

	"libvirt.org/go/libvirtxml"

	"github.com/virtconsole/virtconsole/protocols"
)

// device is one console-capable device of a domain: a VNC or SPICE
// <graphics>, a <serial> or a <console>, with its index among the devices
// of its kind (the metadata's port attribute).
type device struct {
	kind    protocols.Kind
	index   int
	alias   string
	vnc     *libvirtxml.DomainGraphicVNC
	spice   *libvirtxml.DomainGraphicSpice
	chardev *libvirtxml.DomainChardevSource
}

func devices(d *libvirtxml.Domain) []device {
	if d == nil || d.Devices == nil {
		return nil
	}
	var out []device
	nv, ns := 0, 0
	for _, g := range d.Devices.Graphics {
		switch {
		case g.VNC != nil:
			out = append(out, device{kind: protocols.KindVNC, index: nv, vnc: g.VNC})
			nv++
		case g.Spice != nil:
			out = append(out, device{kind: protocols.KindSPICE, index: ns, spice: g.Spice})
			ns++
		}
	}
	for i, s := range d.Devices.Serials {
		dev := device{kind: protocols.KindSerial, index: i, chardev: s.Source, alias: "serial" + strconv.Itoa(i)}
		if s.Alias != nil && s.Alias.Name != "" {
			dev.alias = s.Alias.Name
		}
		out = append(out, dev)
	}
	for i, c := range d.Devices.Consoles {
		dev := device{kind: protocols.KindConsole, index: i, chardev: c.Source, alias: "console" + strconv.Itoa(i)}
		if c.Alias != nil && c.Alias.Name != "" {
			dev.alias = c.Alias.Name
		}
		out = append(out, dev)
	}
	return out
}

func findDevice(devs []device, kind protocols.Kind, index int) (device, bool) {
	for _, d := range devs {
		if d.kind == kind && d.index == index {
			return d, true
		}
	}
	return device{}, false
}

// describe names the device's backend for listings, e.g. "pty" or
// "tcp 127.0.0.1:4555 tls".
func (d device) describe() string {
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

// stream reports whether dev is reached through libvirt's console stream
// (a pty chardev, libvirt's default) rather than at a network address.
func (d device) stream() bool {
	return d.kind.IsText() && (d.chardev == nil || d.chardev.Pty != nil)
}

// deviceTarget computes where dev of a running domain is reached. host and
// insecure come from the device's metadata entry; libvirtHost is the
// hypervisor's address as the libvirt URI names it. For a stream device
// it returns the kind only: the caller adds the stream's address and dial.
func deviceTarget(dev device, metaHost string, insecure bool, libvirtHost string) (protocols.Target, error) {
	t := protocols.Target{Kind: dev.kind, Insecure: insecure}
	switch {
	case dev.vnc != nil:
		g := dev.vnc
		if g.Socket != "" && g.Port <= 0 {
			return t, fmt.Errorf("vnc %d listens on a unix socket, which the proxy cannot reach; give it a TCP listen address", dev.index)
		}
		if g.Port <= 0 {
			return t, fmt.Errorf("vnc %d has no port yet (domain not running?)", dev.index)
		}
		t.Address = net.JoinHostPort(pickHost(metaHost, graphicsListen(g.Listen, g.Listeners), libvirtHost), strconv.Itoa(g.Port))
		t.Password = g.Passwd
		return t, nil
	case dev.spice != nil:
		g := dev.spice
		port := g.TLSPort
		if insecure && g.Port > 0 {
			port = g.Port
		} else if port <= 0 {
			if g.Port > 0 {
				return t, fmt.Errorf("spice %d has no TLS port; set spice_tls in qemu.conf, or enable the console as insecure", dev.index)
			}
			return t, fmt.Errorf("spice %d has no port yet (domain not running?)", dev.index)
		} else {
			t.Insecure = false // only the TLS port exists
		}
		t.Address = net.JoinHostPort(pickHost(metaHost, graphicsListen(g.Listen, g.Listeners), libvirtHost), strconv.Itoa(port))
		t.Password = g.Passwd
		return t, nil
	}
	if dev.stream() {
		// Secured by the libvirt connection it runs on.
		return protocols.Target{Kind: dev.kind}, nil
	}
	src := dev.chardev
	switch {
	case src.TCP != nil:
		tcp := src.TCP
		if tcp.Mode == "connect" {
			return t, fmt.Errorf("%s %d is a TCP client chardev (mode='connect'); only mode='bind' can be reached", dev.kind, dev.index)
		}
		if _, err := strconv.Atoi(tcp.Service); err != nil {
			return t, fmt.Errorf("%s %d: TCP service %q is not a port number", dev.kind, dev.index, tcp.Service)
		}
		t.Address = net.JoinHostPort(pickHost(metaHost, tcp.Host, libvirtHost), tcp.Service)
		if tcp.TLS == "yes" {
			t.Insecure = false
		}
		return t, nil
	}
	return t, fmt.Errorf("%s %d is a %s chardev; only tcp and pty ones can be reached", dev.kind, dev.index, chardevType(src))
}
