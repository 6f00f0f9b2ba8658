package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/spice"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// ListenTLS are the flags of a TLS listener, shared by every daemon:
// --tls-dir is the daemon's own (server) credentials, as --connect-tls-dir
// and --resolver-tls-dir are its client credentials toward QEMU and a
// resolver.
type ListenTLS struct {
	TLSDir            string
	ClientCA          string
	RequireClientCert bool
	Insecure          bool
	MinVersion        string
	CipherSuites      []string
}

func (o *ListenTLS) addFlags(fl *pflag.FlagSet) {
	fl.StringVar(&o.TLSDir, "tls-dir", "", "serve TLS with server-cert.pem and server-key.pem from `DIR`")
	fl.StringVar(&o.ClientCA, "client-ca", "", "require client certificates signed by the CA in `FILE` (mutual TLS)")
	fl.BoolVar(&o.RequireClientCert, "require-client-cert", false, "require client certificates signed by ca-cert.pem in --tls-dir (mutual TLS)")
	fl.BoolVar(&o.Insecure, "listen-insecure", false, "serve cleartext HTTP/websockets (tokens travel in the clear)")
	fl.StringVar(&o.MinVersion, "tls-min-version", "1.2", "lowest TLS `VERSION` accepted or offered: 1.2 or 1.3")
	fl.StringSliceVar(&o.CipherSuites, "tls-cipher-suites", nil, "TLS 1.2 cipher `SUITES` allowed (comma-separated Go names; default: Go's secure set)")
}

// policy parses the TLS policy flags.
func (o *ListenTLS) policy() (tlscreds.Policy, error) {
	p, err := tlscreds.ParsePolicy(o.MinVersion, o.CipherSuites)
	if err != nil {
		return p, &cmdutil.FlagError{Err: err}
	}
	return p, nil
}

// live loads the listener's credentials into a Reloader, so that a
// renewal needs no restart; nil means cleartext.
func (o *ListenTLS) live(p tlscreds.Policy) (*tlscreds.Reloader[*tls.Config], error) {
	if o.Insecure && o.TLSDir == "" {
		return nil, nil
	}
	return tlscreds.NewReloader(func() (*tls.Config, error) { return o.config(p) }, o.TLSDir, o.ClientCA)
}

// config loads and checks the listener's credentials; nil means cleartext.
func (o *ListenTLS) config(p tlscreds.Policy) (*tls.Config, error) {
	switch {
	case o.Insecure && o.TLSDir != "":
		return nil, &cmdutil.FlagError{Err: errors.New("give --tls-dir or --listen-insecure, not both")}
	case o.Insecure:
		return nil, nil
	case o.TLSDir == "":
		return nil, &cmdutil.FlagError{Err: errors.New("no TLS credentials for the listener: give --tls-dir DIR (see 'virtconsole certs create'), or --listen-insecure for cleartext")}
	}
	creds, err := tlscreds.Load(o.TLSDir, tlscreds.RoleServer)
	if err != nil {
		return nil, err // a *tlscreds.CheckError: ExitTLS
	}
	require := o.RequireClientCert || o.ClientCA != ""
	cfg := creds.ServerConfig(p, require)
	if o.ClientCA != "" {
		ca, err := tlscreds.LoadCAFile(o.ClientCA)
		if err != nil {
			return nil, err // a *tlscreds.CheckError: ExitTLS
		}
		cfg.ClientCAs = ca.CAs
	} else if require && creds.CAs == nil {
		return nil, cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("--require-client-cert: no %s in %s; add it or give --client-ca FILE", "ca-cert.pem", o.TLSDir))
	}
	return cfg, nil
}

// The daemons' flags are registered here, each name once, so that it
// means the same on every daemon that has it.

// addProxyFlags registers the flags "server proxy" and "server" share.
func addProxyFlags(fl *pflag.FlagSet, opts *ProxyOptions) {
	addListenFlags(fl, &opts.Listen, &opts.TLS, "127.0.0.1:6443")
	fl.StringVar(&opts.ConnectTLSDir, "connect-tls-dir", "", "connect to QEMU with TLS using ca-cert.pem (and client-cert.pem, client-key.pem) from `DIR`")
	fl.BoolVar(&opts.ConnectInsecure, "connect-insecure", false, "allow cleartext to consoles the resolver marks insecure")
	fl.StringArrayVar(&opts.AllowedOrigins, "allowed-origin", nil, "also accept websockets from `ORIGIN` (scheme://host[:port]; repeatable)")
	fl.DurationVar(&opts.HandshakeTimeout, "handshake-timeout", 15*time.Second, "give up resolving, connecting and handshaking a session after `DURATION`")
	fl.DurationVar(&opts.DrainTimeout, "drain-timeout", 30*time.Second, "on SIGTERM, running sessions may go on for `DURATION`")
	fl.IntVar(&opts.MaxFailures, "max-failures", 20, "`N` refused tokens allowed per client address per minute before 429")
	fl.BoolVar(&opts.TrustForwarded, "trust-forwarded", false, "honour X-Forwarded-Host/-For from a front proxy (only if every request comes through one)")
	fl.IntVar(&opts.MaxSessions, "max-sessions", 1000, "`N` sessions open or opening at once before 503 (0: no bound)")
	fl.IntVar(&opts.MaxSessionsPerToken, "max-sessions-per-token", 0, "`N` of --max-sessions one token may hold (0: half of --max-sessions; each SPICE channel counts)")
	fl.IntVar(&opts.MaxSessionsPerClient, "max-sessions-per-client", 0, "`N` of --max-sessions one client address may hold (0: half of --max-sessions)")
	fl.BoolVar(&opts.NoSerialSharing, "no-serial-sharing", false, "give each viewer of a serial or console device its own connection to it, for consoles that serve many clients (default: viewers share its one connection)")
	fl.IntVar(&opts.MaxConnsPerClient, "max-conns-per-client", 100, "`N` connections open at once per client address; more are closed on accept (0: no bound; none with --trust-forwarded)")
	fl.StringVar(&opts.DebugListen, "debug-listen", "", "serve Go's profiling endpoints (/debug/pprof/) on the loopback `ADDR` (host:port; off by default)")
	fl.DurationVar(&opts.SPICEGrace, "spice-grace", spice.DefaultGrace, "for `DURATION` after a SPICE session's main channel, other channel types not in its list are still accepted")
	fl.StringVar(&opts.GrantKey, "grant-key", "", "accept share links signed with the key in `FILE` (mode 0600; 'virtconsole share --new-key FILE' makes one; the admin API mints them with it)")
	addRecordFlags(fl, &opts.Record)
	addMetricsFlags(fl, &opts.Ops)
	addAuditFlag(fl, &opts.Ops)
	addAdminFlags(fl, &opts.Admin)
	addSPICEConnectFlags(fl, &opts.SPICEConnect)
	addScaleFlags(fl, &opts.Scale)
}

// addListenFlags registers --listen (default addr) and the listener's TLS
// flags.
func addListenFlags(fl *pflag.FlagSet, listen *string, t *ListenTLS, addr string) {
	_, port, _ := net.SplitHostPort(addr)
	fl.StringVar(listen, "listen", addr, "listen on `ADDR` (host:port; :"+port+" for every address)")
	t.addFlags(fl)
}

// addTokensFlag registers --tokens, the static token file.
func addTokensFlag(fl *pflag.FlagSet, path *string) {
	fl.StringVar(path, "tokens", "", "resolve tokens with the static token `FILE` (JSON; reloaded when it changes; a token removed from it opens no new session, but sessions it opened go on)")
}

// addConnectFlag registers -c/--connect, the libvirt URIs tokens are
// resolved from; def says what none means.
func addConnectFlag(fl *pflag.FlagSet, uris *[]string, def string) {
	fl.StringArrayVarP(uris, "connect", "c", nil, "libvirt `URI` to resolve tokens from: its domains' console-proxy metadata and secrets (repeatable; "+def+")")
}

// addSingleUseFlag registers --single-use. Its default depends on where
// tokens come from (off for a static file, on for libvirt); how says how
// a token is retired.
func addSingleUseFlag(fl *pflag.FlagSet, singleUse *bool, def bool, how string) {
	fl.BoolVar(singleUse, "single-use", def, "each token opens one session only: "+how)
}

// addWebFlag registers --web, the browser console pages. Its default
// depends on the daemon: on for the bundled server, which "virtconsole
// open" links to; off for the proxy alone, which a front end may serve.
func addWebFlag(fl *pflag.FlagSet, web *bool, def bool) {
	fl.BoolVar(web, "web", def, "serve the browser console pages (vnc.html, spice.html, serial.html) beside /websockify; see 'virtconsole open'")
}

// addReusableTokensAlias registers "server"'s former --reusable-tokens,
// which is --single-use=false: it keeps working, and cobra prints a
// deprecation notice when it is used.
func addReusableTokensAlias(fl *pflag.FlagSet, singleUse *bool) {
	fl.Var((*notBool)(singleUse), "reusable-tokens", "let a token open more than one session (--single-use=false)")
	fl.Lookup("reusable-tokens").NoOptDefVal = "true"
	_ = fl.MarkDeprecated("reusable-tokens", "use --single-use=false")
	cmdutil.MarkAlias(fl, "reusable-tokens", "single-use")
}

// notBool is a bool flag that stores the negation of what it is given:
// an old name that said the opposite of the new one.
type notBool bool

func (b *notBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b = notBool(!v)
	return nil
}

func (b *notBool) String() string   { return strconv.FormatBool(!bool(*b)) }
func (b *notBool) Type() string     { return "bool" }
func (b *notBool) IsBoolFlag() bool { return true }

// share is a token's or a client's share of --max-sessions: n if given,
// else half of max (rounded up), so that one cannot deny everyone else.
func share(n, max int) int {
	if n > 0 {
		return n
	}
	return (max + 1) / 2
}
