package server

import (
	"cmp"
	"crypto/tls"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

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
	// Passthrough relays the tunnels to QEMU's TLS ports
	// (proxy.ConnectGateway.Passthrough).
	Passthrough bool
	// GrantTTL is a passthrough grant's lifetime (hidden; tests shorten
	// it); 0 means proxy.PassthroughGrantTTL.
	GrantTTL time.Duration

	gateway *proxy.ConnectGateway  // once side has made it
	port    atomic.Pointer[string] // the gateway's port, once it listens
	tls     bool                   // whether viewers reach it over TLS
}

// addSPICEConnectFlags registers --spice-connect-listen and
// --spice-connect-tls-dir.
func addSPICEConnectFlags(fl *pflag.FlagSet, o *SPICEConnect) {
	fl.StringVar(&o.Listen, "spice-connect-listen", "", "serve the SPICE CONNECT gateway for native SPICE clients with a .vv file ('virtconsole vv') at `ADDR` (host:port; TLS with --tls-dir unless --listen-insecure; default: off)")
	fl.StringVar(&o.TLSDir, "spice-connect-tls-dir", "", "the gateway's server certificate inside the tunnel (server-cert.pem, server-key.pem, ca-cert.pem) from `DIR` (default: --tls-dir)")
	fl.BoolVar(&o.Passthrough, "spice-connect-passthrough", false, "relay the gateway's tunnels to QEMU's SPICE TLS port unterminated: viewers check QEMU's own certificate, .vv files carry the VM's SPICE password, a single-use token admits its first client address for a minute")
	fl.DurationVar(&o.GrantTTL, "spice-connect-grant-ttl", 0, "a passthrough grant's lifetime: `DURATION` (for tests)")
	fl.MarkHidden("spice-connect-grant-ttl")
}

// side adds the gateway's listener to d, serving p's sessions: its own
// TLS is the websocket listener's (listen; nil with --listen-insecure),
// without client certificates (spice-gtk has none to give); inside the
// tunnels it presents the certificate of --spice-connect-tls-dir or
// --tls-dir. maxConns bounds each client address's connections
// (--max-conns-per-client, even with --trust-forwarded: the gateway's
// clients connect directly). Nothing without --spice-connect-listen.
//
// With --spice-connect-passthrough there is no certificate inside the
// tunnels (QEMU's is the viewer's); the CA of --connect-tls-dir (consoleDir),
// which QEMU's certificates are checked against, goes into the .vv files.
func (o *SPICEConnect) side(d *daemon, p *proxy.Proxy, listen *tlscreds.Reloader[*tls.Config], t *ListenTLS, consoleDir string, policy tlscreds.Policy, maxConns int, log *slog.Logger) error {
	if o.Listen == "" {
		switch {
		case o.TLSDir != "":
			return &cmdutil.FlagError{Err: errors.New("--spice-connect-tls-dir goes with --spice-connect-listen ADDR")}
		case o.Passthrough:
			return &cmdutil.FlagError{Err: errors.New("--spice-connect-passthrough goes with --spice-connect-listen ADDR")}
		}
		return nil
	}
	if o.Passthrough {
		return o.passthroughSide(d, p, listen, consoleDir, maxConns, log)
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
	o.addSide(d, listen, maxConns, &proxy.ConnectGateway{Proxy: p,
		TLSConfig: func() *tls.Config { return inner.Current().cfg },
		CA:        func() []byte { return inner.Current().ca }})
	log.Debug("SPICE CONNECT gateway configured", "target", proxy.ConnectTarget, "tls_dir", dir)
	return nil
}

// passthroughSide is side with --spice-connect-passthrough.
func (o *SPICEConnect) passthroughSide(d *daemon, p *proxy.Proxy, listen *tlscreds.Reloader[*tls.Config], consoleDir string, maxConns int, log *slog.Logger) error {
	if o.TLSDir != "" {
		return &cmdutil.FlagError{Err: errors.New("--spice-connect-tls-dir is not used with --spice-connect-passthrough (the tunnels carry QEMU's own TLS): drop one")}
	}
	if consoleDir == "" {
		return &cmdutil.FlagError{Err: errors.New("--spice-connect-passthrough needs --connect-tls-dir DIR: its CA checks QEMU's certificates and goes into the .vv files")}
	}
	o.addSide(d, listen, maxConns, &proxy.ConnectGateway{Proxy: p, Passthrough: true, GrantTTL: o.GrantTTL,
		ConsoleCA: func() []byte {
			creds, err := tlscreds.LoadClient(consoleDir)
			if err != nil {
				return nil
			}
			ca, _ := os.ReadFile(creds.CAFile)
			return ca
		}})
	log.Warn("SPICE CONNECT gateway in passthrough mode: .vv files carry the VM's SPICE password, and a single-use token admits its first client address for a while",
		"target", proxy.ConnectTarget, "grant", cmp.Or(o.GrantTTL, proxy.PassthroughGrantTTL))
	return nil
}

// addSide adds the gateway's listener to d: TLS with the websocket
// listener's certificate (listen; nil: cleartext), no client certificates.
func (o *SPICEConnect) addSide(d *daemon, listen *tlscreds.Reloader[*tls.Config], maxConns int, g *proxy.ConnectGateway) {
	// Behind HAProxy (haproxy.cfg's spice-connect frontend) the gateway
	// reads the client's address from the PROXY header, as the daemon's
	// own listener does.
	s := side{name: "spice-connect", flag: "--spice-connect-listen", addr: o.Listen, maxConns: maxConns, trusted: d.trustedProxies, handler: g,
		bound: func(a net.Addr) {
			if _, port, err := net.SplitHostPort(a.String()); err == nil {
				o.port.Store(&port)
			}
		}}
	o.tls = listen != nil
	if listen != nil {
		s.tls = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := listen.Current().Clone()
			cfg.ClientAuth, cfg.ClientCAs = tls.NoClientCert, nil
			return cfg, nil
		}}
	}
	d.sides = append(d.sides, s)
	o.gateway = g
}

// serveVV is POST /spice.vv beside the browser pages (--web): the .vv
// file for the token of the page's link (web's vv.html), for the gateway
// at the host name the browser reached the proxy by and the gateway's
// own port (a front proxy's X-Forwarded-Host with --trust-forwarded).
func (o *SPICEConnect) serveVV(w http.ResponseWriter, r *http.Request, trustForwarded bool) {
	port := o.port.Load()
	if o.gateway == nil || port == nil {
		http.Error(w, "no SPICE CONNECT gateway here: the proxy serves .vv files with --spice-connect-listen ADDR", http.StatusNotFound)
		return
	}
	host := r.Host
	if fh := r.Header.Get("X-Forwarded-Host"); trustForwarded && fh != "" {
		host = strings.TrimSpace(strings.Split(fh, ",")[0])
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	gw := &url.URL{Scheme: "http", Host: net.JoinHostPort(strings.Trim(host, "[]"), *port)}
	if o.tls {
		gw.Scheme = "https"
	}
	o.gateway.ServeVV(w, r, gw)
}

// tunnelCreds are what the gateway presents inside its tunnels: the
// server configuration, and its CA's PEM for .vv files.
type tunnelCreds struct {
	cfg *tls.Config
	ca  []byte
}
