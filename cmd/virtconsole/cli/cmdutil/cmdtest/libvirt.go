package cmdtest

import (
	"context"
	"testing"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtfake"
)

// SPICEDomain is a libvirt fake with one running domain, name, whose SPICE
// TLS port (5902) is enabled for the proxy, and that console's token.
// Connect to the fake with Libvirt.
func SPICEDomain(t testing.TB, name string) (h *libvirtfake.Hypervisor, token string) {
	t.Helper()
	h = libvirtfake.New()
	h.Start(h.Define(name, `<graphics type='spice' tlsPort='5902' autoport='no' listen='127.0.0.1'/>`))
	ctx := context.Background()
	c, err := Libvirt(h)(ctx, "qemu:///system")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Enable(ctx, name, nil, "", false); err != nil {
		t.Fatal(err)
	}
	token, _, err = c.Token(ctx, name, protocols.KindSPICE, 0)
	if err != nil {
		t.Fatal(err)
	}
	return h, token
}

// Libvirt is a Factory's Libvirt connecting to the fake h.
func Libvirt(h *libvirtfake.Hypervisor) func(ctx context.Context, uri string) (*libvirtadmin.Conn, error) {
	return func(ctx context.Context, uri string) (*libvirtadmin.Conn, error) {
		return libvirtadmin.Connect(ctx, uri, libvirtadmin.WithConnector(h.Connect))
	}
}
