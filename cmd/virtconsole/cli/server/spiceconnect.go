package server

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"os"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// SPICEConnect are the flags of the SPICE CONNECT gateway
// (proxy.ConnectGateway): a listener of its own beside the websocket one,
// for native SPICE clients given a .vv file ('virtconsole vv').
type SPICEConnect struct {
	// Listen is the gateway's address; "" means no gateway.
	Listen string
	// TLSDir holds the server certificate presented inside the tunnels
	// (the one the .vv file's ca and host-subject name); "" means
	// --tls-dir's.
	TLSDir string
}

// addSPICEConnectFlags registers --spice-connect-listen and
// --spice-connect-tls-dir.
func addSPICEConnectFlags(fl *pflag.FlagSet, o *SPICEConnect) {
	fl.StringVar(&o.Listen, "spice-connect-listen", "", "serve the SPICE CONNECT gateway for native SPICE clients with a .vv file ('virtconsole vv') at `ADDR` (host:port; TLS with --tls-dir unless --listen-insecure; default: off)")
	fl.StringVar(&o.TLSDir, "spice-connect-tls-dir", "", "the gateway's server certificate inside the tunnel (server-cert.pem, server-key.pem, ca-cert.pem) from `DIR` (default: --tls-dir)")
}

// side adds the gateway's listener to d, serving p's sessions: its own
// TLS is the websocket listener's (listen; nil with --listen-insecure),
// without client certificates (spice-gtk has none to give); inside the
// tunnels it presents the certificate of --spice-connect-tls-dir or
// --tls-dir. maxConns bounds each client address's connections
// (--max-conns-per-client, even with --trust-forwarded: the gateway's
// clients connect directly). Nothing without --spice-connect-listen.
func (o *SPICEConnect) side(d *daemon, p *proxy.Proxy, listen *tlscreds.Reloader[*tls.Config], t *ListenTLS, policy tlscreds.Policy, maxConns int, log *slog.Logger) error {
	if o.Listen == "" {
		if o.TLSDir != "" {
			return &cmdutil.FlagError{Err: errors.New("--spice-connect-tls-dir goes with --spice-connect-listen ADDR")}
		}
		return nil
	}
	dir := o.TLSDir
	if dir == "" {
		dir = t.TLSDir
	}
	if dir == "" {
		return &cmdutil.FlagError{Err: errors.New("--spice-connect-listen needs a server certificate for the TLS inside its tunnels: give --tls-dir DIR or --spice-connect-tls-dir DIR")}
	}
	inner, err := tlscreds.NewReloader(func() (tunnelCreds, error) {
		creds, err := tlscreds.Load(dir, tlscreds.RoleServer)
		if err != nil {
			return tunnelCreds{}, err // a *tlscreds.CheckError: ExitTLS
		}
		c := tunnelCreds{cfg: creds.ServerConfig(policy, false)}
		if creds.CAFile != "" {
			if c.ca, err = os.ReadFile(creds.CAFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return tunnelCreds{}, err
			}
		}
		return c, nil
	}, dir)
	if err != nil {
		return err
	}
	addCredentials(d, "SPICE CONNECT credentials", inner)
	s := side{name: "spice-connect", flag: "--spice-connect-listen", addr: o.Listen, maxConns: maxConns,
		handler: &proxy.ConnectGateway{Proxy: p,
			TLSConfig: func() *tls.Config { return inner.Current().cfg },
			CA:        func() []byte { return inner.Current().ca }}}
	if listen != nil {
		s.tls = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := listen.Current().Clone()
			cfg.ClientAuth, cfg.ClientCAs = tls.NoClientCert, nil
			return cfg, nil
		}}
	}
	d.sides = append(d.sides, s)
	log.Debug("SPICE CONNECT gateway configured", "target", proxy.ConnectTarget, "tls_dir", dir)
	return nil
}

// tunnelCreds are what the gateway presents inside its tunnels: the
// server configuration, and its CA's PEM for .vv files.
type tunnelCreds struct {
	cfg *tls.Config
	ca  []byte
}
