package connect

import (
	"context"
	"fmt"
	"net"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
)

// NoDeviceError means DOMAIN has no console device of the kind and index
// asked for. It is a consolestream.ErrNoConsoleDevice (ExitNotFound).
type NoDeviceError struct {
	Domain string
	Kind   protocols.Kind
	Index  int
}

func (e *NoDeviceError) Error() string {
	return fmt.Sprintf("domain %s has no %s device with index %d; see 'virtconsole consoles %s'", e.Domain, e.Kind, e.Index, e.Domain)
}

func (e *NoDeviceError) Unwrap() error { return consolestream.ErrNoConsoleDevice }

// DomainToken reads the token of a domain's console (the device of kind
// with index o.Index) from libvirt at o.URI: the secret named in its
// console-proxy metadata.
func (o *DomainOptions) DomainToken(ctx context.Context, f *cmdutil.Factory, domain string, kind protocols.Kind) (string, error) {
	c, err := f.Libvirt(ctx, o.URI)
	if err != nil {
		return "", err
	}
	defer c.Close()
	tok, _, err := c.Token(ctx, domain, kind, o.Index)
	return tok, err
}

// domainConsole finds a domain's console device for direct mode. The
// caller closes the returned connection.
func (o *DomainOptions) domainConsole(ctx context.Context, f *cmdutil.Factory, domain string, kind protocols.Kind) (*libvirtadmin.Conn, libvirtadmin.Console, error) {
	c, err := f.Libvirt(ctx, o.URI)
	if err != nil {
		return nil, libvirtadmin.Console{}, err
	}
	cons, err := c.Consoles(ctx, domain, false)
	if err != nil {
		c.Close()
		return nil, libvirtadmin.Console{}, err
	}
	for _, con := range cons {
		if con.Kind != kind || con.Index != o.Index {
			continue
		}
		if con.Address == "" {
			c.Close()
			return nil, con, &cmdutil.DialError{Msg: fmt.Sprintf("%s %d of domain %s cannot be reached: %s", kind, o.Index, domain, con.Problem)}
		}
		return c, con, nil
	}
	c.Close()
	return nil, libvirtadmin.Console{}, &NoDeviceError{Domain: domain, Kind: kind, Index: o.Index}
}

// isStream reports whether t is a pty console, which only libvirt's
// console stream reaches.
func isStream(t protocols.Target) bool {
	return t.Dial != nil
}

// streamDial returns the dial of a domain's pty console over libvirt's
// console stream (force takes it over from another client).
func streamDial(lc *libvirtadmin.Conn, domain, device string, force bool) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		return lc.OpenConsole(ctx, domain, device, force)
	}
}
