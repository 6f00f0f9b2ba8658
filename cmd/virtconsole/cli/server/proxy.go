package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/connect"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
	"github.com/virtconsole/virtconsole/tunnel/grant"
	"github.com/virtconsole/virtconsole/tunnel/park"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/web"
)

// ProxyOptions are the flags of "virtconsole server proxy".
type ProxyOptions struct {
	Listen string
	TLS    ListenTLS

	ConnectTLSDir   string
	ConnectInsecure bool

	Tokens         string
	ResolverURL    string
	ResolverTLSDir string
	// Connect are libvirt URIs (bundled mode, "virtconsole server").
	Connect []string
	// SingleUse lets each token open one session only (--single-use: off
	// by default for a static token file, on for libvirt).
	SingleUse bool
	// Web serves the browser console pages beside /websockify (--web).
	Web bool
	// EndRevoked ends a token's sessions when a reload of the token file
	// no longer lists it (--end-revoked-sessions).
	EndRevoked bool

	AllowedOrigins   []string
	HandshakeTimeout time.Duration
	DrainTimeout     time.Duration
	MaxFailures      int
	SPICEGrace       time.Duration
	MaxSessions      int
	TrustForwarded   bool
	// NoSerialSharing gives each viewer of a text console a connection
	// of its own (proxy.NoSerialSharing).
	NoSerialSharing bool
	// MaxSessionsPerToken and MaxSessionsPerClient are shares of
	// MaxSessions; zero means half of it.
	MaxSessionsPerToken, MaxSessionsPerClient int
	// MaxConnsPerClient bounds each client address's open connections;
	// behind a front proxy (TrustForwarded) all share its address.
	MaxConnsPerClient int
	// GrantKey is the key file of share links (--grant-key): the proxy
	// accepts grants signed with it, and its admin API mints them.
	GrantKey string
	// DebugListen is the loopback address of the profiling endpoints
	// (--debug-listen); empty means none.
	DebugListen string

	// Record is session recording (--record-dir and its flags).
	Record Record

	// Ops are the metrics listener and the audit log.
	Ops Ops
	// Admin is the sessions API's listener.
	Admin Admin
	// SPICEConnect is the SPICE CONNECT gateway's listener.
	SPICEConnect SPICEConnect
	// Scale are the flags of a replica behind a load balancer.
	Scale Scale

	// Ready, if set, is called with the listening address (tests).
	Ready func(net.Addr)

	// configReload re-reads the config file on SIGHUP (nil: none).
	configReload *reloadPart
}

// NewCmdProxy returns "virtconsole server proxy".
func NewCmdProxy(f *cmdutil.Factory, runF func(context.Context, *ProxyOptions) error) *cobra.Command {
	opts := &ProxyOptions{}
	dopts := &daemonOptions{table: "proxy"}
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run the websocket console proxy",
		Long: `Run the websocket console proxy.

Viewers open a websocket at /websockify carrying a token (Authorization:
Bearer header, "token" cookie, or "token" query parameter). The proxy asks its
resolver what the token opens, connects to QEMU with TLS, runs the console's
handshake, and only then accepts the websocket, so every failure is an HTTP
status with a one-line reason: 401 no token, 403 origin not allowed, 404
unknown token, 429 too many refused tokens, 502 console unreachable or its
handshake failed, 503 resolver unavailable. /healthz answers "ok" while the
process serves; /readyz answers "ok" while it takes new sessions, and 503
with the reason while it is draining or (with libvirt) reaches none of its
hypervisors yet: point a load balancer's health checks at it.

TLS is required on both legs: --tls-dir for the listener, --connect-tls-dir
for QEMU (ca-cert.pem, plus client-cert.pem and client-key.pem when QEMU
verifies clients). --listen-insecure and --connect-insecure allow cleartext.

The token file (--tokens) is a JSON object mapping each token to a console:
  {"s3cret": {"type": "serial", "address": "127.0.0.1:4555", "insecure": false}}
(optional keys: "role": "view" or "control"; "record": "off", "on" or
"required", see --record-dir below).
It is reloaded when it changes; a broken edit keeps the last good table.
Removing a token refuses new sessions with it; the sessions it opened go on
until they end, or the proxy restarts, unless --end-revoked-sessions ends
them at the reload.

SIGINT/SIGTERM stop accepting and give running sessions --drain-timeout to
end before closing them (websocket close 1001 "proxy shutting down"). With
--drain-grace, /readyz fails at once but new sessions are still accepted for
that long, so that a load balancer's health checks take the replica out of
rotation before it refuses anyone.

Behind a load balancer (cmd/virtconsole/haproxy.cfg in the source tree),
--trusted-proxies ADDRS names the balancer's addresses: their connections
must start with a PROXY protocol v2 header (HAProxy's send-proxy-v2), whose
client address the per-client limits, the logs and the audit log then use.
Connections from other addresses are served as they are: their headers are
never read as PROXY headers. The per-client connection bound
(--max-conns-per-client) is then left to the balancer.

--metrics-listen serves Prometheus metrics (virtconsole_*: sessions active,
started and ended, refusals by status, bytes by console kind, setup time,
resolver lookups, libvirt connections; Go and process metrics) on a listener
of its own. --audit-log writes one JSON object per line for each session
start and end, refusal and session the proxy ended, with the client's
address and certificate subject and a token_id (12 hex digits of the
token's SHA-256), never the token; SIGHUP reopens it after logrotate.

--grant-key FILE accepts share links signed with the key in FILE (see
'virtconsole share'): a grant names a console (by its token's ID, with
--tokens; by its libvirt domain, kind and index, with "virtconsole
server") or a live session, a role and an expiry; a refused one gets 403
with its reason (grant expired, grant signature invalid, grant role not
allowed, shared session has ended), and the admin API mints them (POST
/v1/grants).

--admin-listen serves the sessions API over TLS (the --tls-dir server
certificate) to clients with a certificate from --admin-client-ca only:
GET /v1/sessions lists the live sessions as JSON, DELETE /v1/sessions/ID
ends one (204; 404 unknown); its viewer gets the websocket close 4002
"session ended by an administrator", and the audit log's killed_by is
"admin" and the certificate's CN. Without a client certificate it answers
401, with one from another CA 403. "virtconsole sessions" is its client.
GET /v1/vv?domain=NAME&gateway=https://HOST:PORT[&index=N] ("virtconsole
server" with --spice-connect-listen) answers the .vv file 'virtconsole vv
NAME' writes, for the token libvirt holds for the domain's SPICE console
(application/x-virt-viewer, a download); gateway is the gateway's URL as
viewers reach it. "virtconsole server proxy" has no token per domain: 501.

--record-dir DIR records sessions (--record serial,console,vnc,spice, the
default with --record-dir; "none": only consoles that ask for it): serial and
console sessions as asciicast v2 files that play in asciinema, DIR/START-KIND-ID.cast,
mode 0600, with the session's identity in the header (session ID, console,
client address and certificate subject, token_id; never the token), the
console's output as "o" events and, only with --record-input, what the
viewer typed as "i" events (off by default: it may be a password). When the
session ends, FILE.manifest.json holds the recording's SHA-256, size, session
and times, signed with the Ed25519 key of --record-key ('virtconsole
recordings keygen'); 'virtconsole recordings verify' checks it. A token
file's "record" overrides --record per console: "off", "on" (recorded when
the file can be written; otherwise the session goes on, the log warns and
the audit log's not_recorded says why) or "required" (fail-closed: a
recording that cannot be created refuses the session with 503 and the
reason; one that fails mid-session ends it with the websocket close 1011
"session recording failed: …"). VNC sessions are recorded as RFB streams,
DIR/START-vnc-ID.rfb ('virtconsole recordings export' makes a video or a PNG
of them): what QEMU sent, and what the viewer sent but its keys, pointer and
clipboard (recorded only with --record-input); while recording, the viewer is
limited to the encodings the exporter decodes (Raw, CopyRect, Hextile, ZRLE).
SPICE sessions get metadata only, DIR/START-spice-ID.jsonl, one per channel:
the identity and start, then the end, channel and bytes each way; not what
was shown or typed.

--web serves browser consoles beside /websockify: vnc.html (noVNC),
spice.html (spice-html5) and serial.html (xterm.js), embedded in the binary,
under a strict Content-Security-Policy, from the proxy's own origin only.
A link carries the token in its fragment (https://PROXY/vnc.html#token=…),
which browsers never send; the page hands it to the websocket as the token
cookie. The pages use relative URLs, so a front proxy may serve them under
a prefix (https://front/consoles/vnc.html). "virtconsole open" prints links.

--spice-connect-listen ADDR serves a SPICE CONNECT gateway for native SPICE
clients (remote-viewer, virt-manager, GNOME Boxes) given a .vv file by
'virtconsole vv': each SPICE channel is an HTTP CONNECT (TLS to the gateway
with the --tls-dir certificate unless --listen-insecure) carrying the token,
base64url-encoded, as the Proxy-Authorization: Basic password; the proxy
answers 200, runs TLS inside the tunnel with the --spice-connect-tls-dir (or
--tls-dir) certificate, and serves the channel as it serves a websocket's
(single-use tokens, the SPICE password, audit, limits). No or a wrong token
is 407; a CONNECT to anything but ` + proxy.ConnectTarget + ` (the .vv file's
host and tls-port: "the console this token opens") is 403, so the gateway is
never an open proxy. GET ` + proxy.InfoPath + ` describes the gateway for 'virtconsole vv'.

--spice-connect-passthrough is for deployments where QEMU's own certificate
must be what the viewer checks: the gateway relays each tunnel's bytes to the
token's SPICE TLS port unterminated. The trade-offs: the proxy cannot supply
the SPICE password, so the .vv file ('vv --passthrough') carries the VM's
password, with QEMU's CA (--connect-tls-dir's) and certificate subject; and it
cannot tell one session's channels from another's, so a single-use token is
spent by the first CONNECT and admits further CONNECTs with the same
credential from that client address only, for the session's first minute
(407 from any other address, and after that minute). Anyone holding the
token before it is spent can have the password (POST ` + proxy.InfoPath + `).

Under systemd (virtconsole-proxy.service), a socket handed over by socket
activation replaces --listen, and readiness, stopping and the watchdog are
reported to the service manager (Type=notify).
` + configHelp("proxy"),
		Example: `  virtconsole server proxy --listen 127.0.0.1:6443 --tls-dir ./pki --connect-tls-dir ./pki --tokens tokens.json

  # with Prometheus metrics on loopback and an audit log
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --tokens /etc/virtconsole/tokens.json --metrics-listen 127.0.0.1:9464 --audit-log /var/log/virtconsole/audit.log

  # with the sessions API for "virtconsole sessions", for admins' certificates from admin-ca.pem
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --tokens /etc/virtconsole/tokens.json --admin-listen 127.0.0.1:6444 --admin-client-ca /etc/pki/virtconsole/admin-ca.pem

  # record serial sessions, with signed manifests
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --tokens /etc/virtconsole/tokens.json --record-dir /var/lib/virtconsole/recordings --record-key /etc/virtconsole/record-key.pem

  # with the SPICE CONNECT gateway for .vv files ('virtconsole vv --gateway https://proxy.example:3128')
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --tokens /etc/virtconsole/tokens.json --single-use --spice-connect-listen :3128

  # resolve tokens with an external resolver over mutual TLS
  virtconsole server proxy --listen :6443 --tls-dir /etc/pki/virtconsole --connect-tls-dir /etc/pki/qemu \
      --resolver https://resolver.example:8081/consoleresolver/ --resolver-tls-dir /etc/pki/virtconsole

  # the [proxy] table of a config file, JSON logs
  virtconsole server proxy --config /etc/virtconsole/server.toml --log-format json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			src, err := dopts.load(cmd, f)
			if err != nil {
				return err
			}
			if dopts.PrintConfig {
				return dopts.print(cmd, f.IOStreams.Out, src)
			}
			opts.configReload = dopts.configReload(cmd, f, src)
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runProxy(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	addDaemonFlags(cmd, dopts, &f.Log)
	addProxyFlags(fl, opts)
	addTokensFlag(fl, &opts.Tokens)
	fl.StringVar(&opts.ResolverURL, "resolver", "", "resolve tokens with the REST resolver at `URL`")
	fl.StringVar(&opts.ResolverTLSDir, "resolver-tls-dir", "", "client credentials (ca-cert.pem, client-cert.pem, client-key.pem) for the resolver in `DIR`")
	addSingleUseFlag(fl, &opts.SingleUse, false, "with --tokens, a token is spent when its session starts and recorded, as a hash, in FILE.spent beside the token file, so it stays spent across restarts (a --resolver cannot retire tokens)")
	addWebFlag(fl, &opts.Web, false)
	fl.BoolVar(&opts.EndRevoked, "end-revoked-sessions", false, "with --tokens, end a token's sessions when it is removed from the token file")
	cmdutil.MarkSecret(fl, cmdutil.SecretURL, "resolver") // https://user:password@host/
	return cmd
}

func runProxy(ctx context.Context, f *cmdutil.Factory, opts *ProxyOptions) error {
	log := f.Logger()
	if opts.TrustForwarded && len(opts.Scale.TrustedProxies) > 0 {
		// X-Forwarded-For would be honoured from anyone: the PROXY header
		// is honoured from the balancer only.
		return &cmdutil.FlagError{Err: errors.New("give --trusted-proxies (PROXY protocol from the balancer) or --trust-forwarded, not both")}
	}
	policy, err := opts.TLS.policy()
	if err != nil {
		return err
	}
	listenTLS, err := opts.TLS.live(policy)
	if err != nil {
		return err
	}
	p := &proxy.Proxy{
		AllowInsecureTargets: opts.ConnectInsecure,
		AllowedOrigins:       opts.AllowedOrigins,
		HandshakeTimeout:     opts.HandshakeTimeout,
		Logger:               log,
		Limiter:              proxy.NewLimiter(opts.MaxFailures, time.Minute),
		MaxSessions:          opts.MaxSessions,
		NoSerialSharing:      opts.NoSerialSharing,
		MaxSessionsPerToken:  share(opts.MaxSessionsPerToken, opts.MaxSessions),
		MaxSessionsPerClient: share(opts.MaxSessionsPerClient, opts.MaxSessions),
		TrustForwarded:       opts.TrustForwarded,
		SPICE:                &spice.Sessions{Registry: spice.Registry{Grace: opts.SPICEGrace}, Logger: log},
	}
	if pk, err := park.New(); err == nil {
		p.Parking = pk
		defer pk.Close() // after the daemon's drain: no session is left
	} else {
		log.Debug("idle sessions keep two goroutines each", "reason", err.Error())
	}
	d := &daemon{name: "proxy", addr: opts.Listen, ready: opts.Ready, drain: p.Shutdown, drainTimeout: opts.DrainTimeout,
		drainGrace: opts.Scale.DrainGrace, trustedProxies: opts.Scale.TrustedProxies}
	d.serveTLS(listenTLS)
	if err := connectTLS(d, p, opts, policy, log); err != nil {
		return err
	}
	if !opts.TrustForwarded && len(opts.Scale.TrustedProxies) == 0 {
		// Behind a front proxy, every connection is from its address.
		d.maxConnsPerClient = opts.MaxConnsPerClient
	}
	m, err := opts.Ops.metrics(d)
	if err != nil {
		return err
	}
	al, err := opts.Ops.openAudit(d, log)
	if err != nil {
		return err
	}
	if al != nil {
		defer al.Close()
	}
	if opts.GrantKey != "" {
		key, err := grant.LoadKey(opts.GrantKey)
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		p.GrantKey = key
		opts.Admin.grants = &granter{key: key, audit: al}
	}
	opts.Admin.vv = &vvMaker{f: f, uris: opts.Connect, gateway: func() *proxy.ConnectGateway { return opts.SPICEConnect.gateway }}
	if err := opts.Admin.listener(d, p, opts.TLS.TLSDir, policy, log); err != nil {
		return err
	}
	if err := opts.SPICEConnect.side(d, p, listenTLS, &opts.TLS, opts.ConnectTLSDir, policy, opts.MaxConnsPerClient, log); err != nil {
		return err
	}
	p.Observer = observers(m, al)
	if p.Recorder, err = opts.Record.recorder(log); err != nil {
		return err
	}

	var ready readiness
	if len(opts.Connect) > 0 {
		// Bundled mode: the libvirt resolver in this process, which also
		// dials pty consoles over libvirt's console stream.
		lopts := []libvirtresolver.Option{libvirtresolver.WithLogger(log), libvirtresolver.WithConsoleStreams()}
		if m != nil {
			lopts = append(lopts, libvirtresolver.WithConnState(m.LibvirtConnState))
		}
		if !opts.SingleUse {
			lopts = append(lopts, libvirtresolver.WithReusableTokens())
		}
		lr, err := libvirtresolver.New(opts.Connect, lopts...)
		if err != nil {
			return &cmdutil.FlagError{Err: err}
		}
		defer lr.Close()
		p.Resolver = lr
		ready = libvirtReadiness(lr.Synced)
		p.GrantConsole = func(ctx context.Context, c *grant.Claims) (protocols.Target, error) {
			if c.Domain == "" {
				return protocols.Target{}, fmt.Errorf("%w: a console share of this proxy names a domain", resolver.ErrNotFound)
			}
			return lr.ResolveConsole(ctx, c.Domain, c.Kind, c.Index)
		}
	} else {
		res, err := newResolver(f, opts.Tokens, opts.ResolverURL, opts.ResolverTLSDir, policy)
		if err != nil {
			return err
		}
		if st, ok := res.(*resolver.Static); ok {
			st.SetSingleUse(opts.SingleUse)
			p.GrantConsole = func(ctx context.Context, c *grant.Claims) (protocols.Target, error) {
				if c.Console == "" {
					return protocols.Target{}, fmt.Errorf("%w: a console share of this proxy names a token ID", resolver.ErrNotFound)
				}
				return st.ResolveID(ctx, c.Console)
			}
			if opts.EndRevoked {
				st.OnReload(func() { endRevoked(p, st, log) })
			}
		} else if opts.SingleUse {
			return &cmdutil.FlagError{Err: errors.New("--single-use goes with --tokens (a REST resolver cannot retire tokens)")}
		} else if opts.EndRevoked {
			return &cmdutil.FlagError{Err: errors.New("--end-revoked-sessions goes with --tokens")}
		}
		p.Resolver = res
	}

	d.background = append(d.background, watchTokens(p.Resolver, log)...)
	d.reloadTokens(p.Resolver)
	if m != nil {
		p.Resolver = m.Resolver(backend(p.Resolver), p.Resolver)
		d.reloaded = m.Reloaded
	}
	d.reloadConfigFirst(opts.configReload)

	mux := http.NewServeMux()
	mux.Handle("/websockify", p)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", d.readyz(ready))
	if opts.Web {
		// The pages learn why the proxy refused their websockets here.
		refusals := &web.Refusals{}
		p.ErrorHandler = refusals.Wrap(proxy.WriteError)
		mux.Handle("/", web.Handler(refusals))
		// The .vv download of web's vv.html (the token in a header).
		mux.HandleFunc("POST /spice.vv", func(w http.ResponseWriter, r *http.Request) {
			opts.SPICEConnect.serveVV(w, r, opts.TrustForwarded)
		})
	}
	d.handler = mux
	if opts.DebugListen != "" {
		ds, err := debugSide(opts.DebugListen)
		if err != nil {
			return err
		}
		d.sides = append(d.sides, ds)
	}
	return d.serve(ctx, log)
}

// endRevoked ends the sessions of tokens that the token file no longer
// lists (spent single-use tokens are still listed: theirs go on).
func endRevoked(p *proxy.Proxy, st *resolver.Static, log *slog.Logger) {
	if n := p.EndSessions(func(token string) bool { return !st.Lists(token) }); n > 0 {
		log.Info("ended the sessions of revoked tokens", "sessions", n)
	}
}

// connectTLS gives p the client credentials toward QEMU that the flags
// name, or checks that it may go without.
//
// The credentials are reloaded on SIGHUP and when their files change
// (reload.go): each dial takes the current ones.
func connectTLS(d *daemon, p *proxy.Proxy, opts *ProxyOptions, policy tlscreds.Policy, log *slog.Logger) error {
	switch {
	case opts.ConnectTLSDir != "":
		dir := opts.ConnectTLSDir
		creds, err := tlscreds.NewReloader(func() (*tlscreds.Creds, error) { return connect.ClientCreds(dir) }, dir)
		if err != nil {
			return err
		}
		addCredentials(d, "QEMU-side credentials", creds)
		p.TLSConfig = func(host string) *tls.Config { return creds.Current().ClientConfig(policy, host) }
		p.ExplainTLS = func(err error, peer string) error { return tlscreds.ExplainHandshakeError(err, creds.Current(), peer) }
	case len(opts.Connect) > 0:
		// Bundled mode serves pty consoles through libvirt's console
		// stream, which needs no credentials toward QEMU: start, and
		// refuse the consoles that do need them, each with the reason.
		log.Warn("no --connect-tls-dir: serving only consoles that need no TLS toward QEMU (pty consoles through libvirt" +
			orCleartext(opts.ConnectInsecure) + "); VNC, SPICE and TLS chardevs are refused until the server is started with --connect-tls-dir DIR")
	case !opts.ConnectInsecure:
		return &cmdutil.FlagError{Err: errors.New("no TLS credentials toward QEMU: give --connect-tls-dir DIR, or --connect-insecure for cleartext consoles")}
	}
	return nil
}

// orCleartext names the cleartext consoles --connect-insecure allows.
func orCleartext(insecure bool) string {
	if insecure {
		return ", and consoles enabled with --cleartext"
	}
	return ""
}

// newResolver builds the static or REST resolver the flags name. It
// starts nothing: watchTokens says what runs alongside it.
func newResolver(f *cmdutil.Factory, tokens, url, tlsDir string, policy tlscreds.Policy) (resolver.Resolver, error) {
	switch {
	case tokens != "" && url != "":
		return nil, &cmdutil.FlagError{Err: errors.New("give --tokens or --resolver, not both")}
	case tokens != "":
		st, err := resolver.LoadFile(tokens)
		if err != nil {
			return nil, &cmdutil.FlagError{Err: err} // a file a flag names
		}
		if w := resolver.ExposedFileWarning(tokens); w != "" {
			f.Logger().Warn(w)
		}
		return st, nil
	case url != "":
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if tlsDir != "" {
			creds, err := connect.ClientCreds(tlsDir)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = creds.ClientConfig(policy, "")
		}
		c, err := resolver.NewClient(url, &http.Client{Transport: tr, Timeout: 10 * time.Second})
		if err != nil {
			return nil, &cmdutil.FlagError{Err: err}
		}
		return c, nil
	}
	return nil, &cmdutil.FlagError{Err: errors.New("no resolver: give --tokens FILE (static token file) or --resolver URL")}
}
