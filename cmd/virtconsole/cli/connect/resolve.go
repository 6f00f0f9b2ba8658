package connect

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// Resolve turns the mode Check decided into a Route to a console of kind,
// once: it parses the TLS policy, reads the token (or DOMAIN's, from
// libvirt, to fail now rather than at the first viewer), finds DOMAIN's
// console and loads the credentials. The caller closes the Route.
func (o *Options) Resolve(ctx context.Context, f *cmdutil.Factory, kind protocols.Kind) (*Route, error) {
	policy, err := tlscreds.ParsePolicy(o.TLS.MinVersion, o.TLS.CipherSuites)
	if err != nil {
		return nil, err
	}
	r := &Route{Mode: o.mode, Kind: kind}
	switch {
	case o.mode.Proxied():
		r.proxy, err = o.resolveProxy(ctx, f, kind, policy)
	case o.mode == DirectTarget, o.mode == DirectDomain:
		r.direct, err = o.resolveDirect(ctx, f, kind, policy)
	default:
		return nil, errors.New("connect: Resolve before Check")
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (o *Options) resolveProxy(ctx context.Context, f *cmdutil.Factory, kind protocols.Kind, policy tlscreds.Policy) (*proxyLeg, error) {
	ts := &tokenSource{}
	if o.mode == ProxyToken {
		tok, err := o.Proxy.ReadToken(f)
		if err != nil {
			return nil, err
		}
		ts.fixed = tok
	} else {
		domain := o.domain
		ts.spans = kind == protocols.KindSPICE // one session, many channels
		ts.fetch = func(ctx context.Context) (string, error) { return o.Domain.DomainToken(ctx, f, domain, kind) }
		tok, err := ts.fetch(ctx)
		if err != nil {
			return nil, err
		}
		ts.current = tok
	}
	creds, err := o.Proxy.proxyCreds()
	if err != nil {
		return nil, err
	}
	return &proxyLeg{url: o.Proxy.URL, host: hostOf(o.Proxy.URL), creds: creds, policy: policy, timeout: o.Proxy.Timeout, tokens: ts, view: o.Proxy.View}, nil
}

func (o *Options) resolveDirect(ctx context.Context, f *cmdutil.Factory, kind protocols.Kind, policy tlscreds.Policy) (*directLeg, error) {
	d := &directLeg{
		target:  protocols.Target{Kind: kind, Address: o.Direct.Target, Insecure: o.Direct.Insecure, TLSTunnel: o.Direct.TLSTunnel},
		policy:  policy,
		timeout: o.Direct.Timeout,
		peer:    "QEMU at " + o.Direct.Target,
	}
	if o.mode == DirectDomain {
		lc, con, err := o.Domain.domainConsole(ctx, f, o.domain, kind)
		if err != nil {
			return nil, err
		}
		d.peer = fmt.Sprintf("%s %d of %s at %s", kind, o.Domain.Index, o.domain, con.Target.Address)
		if kind.IsText() {
			return d, o.chardev(d, lc, con)
		}
		lc.Close()
		if con.Target.Insecure && !o.Direct.Insecure && kind == protocols.KindSPICE {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("%s %d of %s has no TLS port; pass --connect-insecure to use its cleartext port", kind, o.Domain.Index, o.domain)}
		}
		d.target.Address, d.target.Password = con.Target.Address, con.Target.Password
	}
	return d, o.graphicsServer(d)
}

// chardev completes d for DOMAIN's serial or console device, which says
// itself how it is reached: libvirt's console stream for a pty, TLS when
// the TCP chardev's backend ends in " tls" (not what the proxy metadata
// says), else cleartext. lc is closed, or kept for the stream.
func (o *Options) chardev(d *directLeg, lc *libvirtadmin.Conn, con libvirtadmin.Console) error {
	d.target = con.Target
	if isStream(d.target) {
		d.stream = streamDial(lc, o.domain, con.Device, o.Domain.Force)
		d.close = lc.Close
		return nil
	}
	lc.Close()
	t := &d.target
	t.Insecure = !strings.HasSuffix(con.Backend, " tls")
	switch {
	case t.Insecure && !o.Direct.Insecure:
		return &cmdutil.FlagError{Err: fmt.Errorf("%s %d of %s is a cleartext TCP chardev at %s; pass --connect-insecure to use it", t.Kind, o.Domain.Index, o.domain, t.Address)}
	case !t.Insecure && o.Direct.TLSDir == "":
		return &cmdutil.FlagError{Err: fmt.Errorf("%s %d of %s is a TLS chardev at %s; give --connect-tls-dir DIR", t.Kind, o.Domain.Index, o.domain, t.Address)}
	case !t.Insecure:
		creds, err := ClientCreds(o.Direct.TLSDir)
		if err != nil {
			return err
		}
		d.creds = creds
	}
	return nil
}

// graphicsServer completes d for a VNC or SPICE server, which the flags say how
// to reach: TLS with --connect-tls-dir wherever QEMU offers it, cleartext
// only with --connect-insecure.
func (o *Options) graphicsServer(d *directLeg) error {
	t := &d.target
	if _, _, err := net.SplitHostPort(t.Address); err != nil {
		return &cmdutil.FlagError{Err: fmt.Errorf("--target %q: want HOST:PORT", t.Address)}
	}
	if o.Direct.PasswordFile != "" {
		b, err := os.ReadFile(o.Direct.PasswordFile)
		if err != nil {
			return &cmdutil.FlagError{Err: fmt.Errorf("password file: %w", err)}
		}
		t.Password = strings.TrimRight(string(b), "\r\n")
	}
	if o.Direct.TLSDir == "" {
		if !o.Direct.Insecure {
			return &cmdutil.FlagError{Err: fmt.Errorf("direct mode needs --connect-tls-dir DIR for TLS toward QEMU (or --connect-insecure for cleartext %s)", strings.ToUpper(string(t.Kind)))}
		}
		if o.Direct.TLSTunnel {
			return &cmdutil.FlagError{Err: errors.New("--tls-tunnel needs --connect-tls-dir DIR")}
		}
		return nil
	}
	creds, err := ClientCreds(o.Direct.TLSDir)
	if err != nil {
		return err
	}
	d.creds = creds
	if t.Kind == protocols.KindSPICE {
		t.Insecure = false
	}
	return nil
}
