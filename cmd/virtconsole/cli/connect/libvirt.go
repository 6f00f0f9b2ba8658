package connect

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
)

// DomainOptions are the flags of client commands that take a DOMAIN.
type DomainOptions struct {
	URI   string
	Index int
}

// AddDomainFlags registers -c/--connect and --index.
func AddDomainFlags(cmd *cobra.Command, o *DomainOptions) {
	cmd.Flags().StringVarP(&o.URI, "connect", "c", "", "libvirt `URI` for DOMAIN (default $LIBVIRT_DEFAULT_URI or qemu:///system)")
	cmd.Flags().IntVar(&o.Index, "index", 0, "which console device of the type: `N` (0 is the first)")
}

// DomainToken reads the token of a domain's console from libvirt (the
// secret named in its console-proxy metadata).
func (o *DomainOptions) DomainToken(ctx context.Context, f *cmdutil.Factory, domain string, kind protocols.Kind) (string, error) {
	c, err := f.Libvirt(ctx, o.URI)
	if err != nil {
		return "", err
	}
	defer c.Close()
	tok, _, err := c.Token(ctx, domain, kind, o.Index)
	if err != nil {
		return "", cmdutil.LibvirtError(err)
	}
	return tok, nil
}

// DomainConsole finds a domain's console device for direct mode. The
// caller closes the returned connection.
func (o *DomainOptions) DomainConsole(ctx context.Context, f *cmdutil.Factory, domain string, kind protocols.Kind) (*libvirtresolver.Conn, libvirtresolver.Console, error) {
	c, err := f.Libvirt(ctx, o.URI)
	if err != nil {
		return nil, libvirtresolver.Console{}, err
	}
	cons, err := c.Consoles(ctx, domain, false)
	if err != nil {
		c.Close()
		return nil, libvirtresolver.Console{}, cmdutil.LibvirtError(err)
	}
	for _, con := range cons {
		if con.Kind != kind || con.Index != o.Index {
			continue
		}
		if con.Address == "" {
			c.Close()
			return nil, con, cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("%s %d of domain %s cannot be reached: %s", kind, o.Index, domain, con.Problem))
		}
		return c, con, nil
	}
	c.Close()
	return nil, libvirtresolver.Console{}, cmdutil.WithCode(cmdutil.ExitNotFound,
		fmt.Errorf("domain %s has no %s device with index %d; see 'virtconsole consoles %s'", domain, kind, o.Index, domain))
}
