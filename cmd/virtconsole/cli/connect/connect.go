// Package connect is how the client commands (serial, vnc, spice) reach a
// console. Options are their route flags, in groups registered in one
// place (AddFlags) with the same names and meanings on every command;
// Check and Resolve turn them, the environment and DOMAIN into a Route,
// once; Route.Dial is the one dial every client command uses: through a
// proxy with a token, or straight to QEMU.
package connect

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
)

// Environment variables the client commands read.
const (
	EnvProxy = "VIRTCONSOLE_PROXY"
	EnvToken = "VIRTCONSOLE_TOKEN"
	// EnvGateway is the SPICE CONNECT gateway of "virtconsole vv".
	EnvGateway = "VIRTCONSOLE_SPICE_GATEWAY"
)

// Mode is how a client reaches a console: the four ways the flags and
// DOMAIN can ask for.
type Mode int

const (
	// ProxyToken: through the proxy, with the token of --token-file,
	// standard input or VIRTCONSOLE_TOKEN.
	ProxyToken Mode = iota + 1
	// ProxyDomain: through the proxy, with DOMAIN's token read from
	// libvirt, afresh for every session (tokens may be single-use).
	ProxyDomain
	// DirectTarget: straight to QEMU at --target (vnc, spice).
	DirectTarget
	// DirectDomain: straight to the console libvirt describes for DOMAIN.
	DirectDomain
)

func (m Mode) String() string {
	switch m {
	case ProxyToken:
		return "proxy+token"
	case ProxyDomain:
		return "proxy+domain"
	case DirectTarget:
		return "direct+target"
	case DirectDomain:
		return "direct+domain"
	}
	return "unresolved"
}

// Proxied reports whether m goes through the proxy.
func (m Mode) Proxied() bool { return m == ProxyToken || m == ProxyDomain }

// Options are the route flags of a client command, by group.
type Options struct {
	Proxy  ProxyOptions
	Domain DomainOptions
	Direct DirectOptions
	TLS    TLSOptions
	// Profile is --profile and --config: defaults for the flags from
	// the client config file, applied by Check.
	Profile ProfileOptions

	// graphics: the command is vnc or spice (--target, --tls-tunnel and
	// --password-file exist; --type and --force do not).
	graphics bool
	mode     Mode
	domain   string
}

// ProxyOptions are the proxy group (and the proxy's timeout).
type ProxyOptions struct {
	URL       string
	TokenFile string
	CAFile    string
	TLSDir    string
	Insecure  bool
	Timeout   time.Duration
	// View asks the proxy for a view-only session (proxy.RoleHeader).
	View bool

	// tokenCommand is a profile's token-command (of the profile
	// tokenCommandOf), used when neither --token-file nor the
	// environment gives the token.
	tokenCommand, tokenCommandOf string
}

// DomainOptions are the domain group: which console of DOMAIN.
type DomainOptions struct {
	URI   string
	Index int
	Type  string // serial: serial or console
	Force bool   // serial, direct: take the console stream over
}

// DirectOptions are the direct group (and QEMU's timeout).
type DirectOptions struct {
	Target       string
	TLSDir       string
	Insecure     bool
	TLSTunnel    bool
	PasswordFile string
	Timeout      time.Duration
}

// TLSOptions are the TLS policy of every TLS connection the client makes.
type TLSOptions struct {
	MinVersion   string
	CipherSuites []string
}

// AddFlags registers the route flags of a client command for consoles of
// kind: the proxy, domain, direct, TLS policy and timeout groups. Text
// consoles (serial, console) have --type and --force; graphics (vnc,
// spice) have --target, --tls-tunnel and --password-file. Former names
// keep working as deprecated aliases.
func AddFlags(cmd *cobra.Command, o *Options, kind protocols.Kind) {
	fl := cmd.Flags()
	o.graphics = !kind.IsText()

	fl.StringVar(&o.Proxy.URL, "proxy", "", "websocket proxy `URL`, e.g. wss://proxy.example:6443 (env "+EnvProxy+")")
	fl.StringVar(&o.Proxy.TokenFile, "token-file", "", "read the console token from `FILE` (- for the first line of stdin; env "+EnvToken+" otherwise)")
	fl.StringVar(&o.Proxy.CAFile, "ca-file", "", "trust the proxy's certificate if signed by the CA in `FILE` (default: system roots)")
	fl.StringVar(&o.Proxy.TLSDir, "proxy-tls-dir", "", "present client-cert.pem/client-key.pem from `DIR` to a proxy that requires client certificates (ca-cert.pem there is trusted too)")
	fl.BoolVar(&o.Proxy.Insecure, "proxy-insecure", false, "allow a ws:// proxy URL (token and console data in cleartext)")
	fl.BoolVar(&o.Proxy.View, "view", false, "watch only: the proxy drops this viewer's input (a token may grant no more than that)")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupProxy, "proxy", "token-file", "ca-file", "proxy-tls-dir", "proxy-insecure", "view")

	cmdutil.AddLibvirtURIFlag(cmd, &o.Domain.URI)
	fl.IntVar(&o.Domain.Index, "index", 0, "which console device of the type: `N` (0 is the first)")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupDomain, "connect", "index")

	if o.graphics {
		scheme := strings.ToUpper(string(kind))
		fl.StringVar(&o.Direct.Target, "target", "", "QEMU's "+scheme+" server at `HOST:PORT` (no proxy, no token)")
		fl.BoolVar(&o.Direct.TLSTunnel, "tls-tunnel", false, "QEMU's port is wrapped in TLS from the first byte (e.g. stunnel)")
		fl.StringVar(&o.Direct.PasswordFile, "password-file", "", "read QEMU's "+scheme+" password from `FILE`")
		cmdutil.SetFlagGroup(fl, cmdutil.GroupDirect, "target", "tls-tunnel", "password-file")
	} else {
		fl.StringVar(&o.Domain.Type, "type", string(protocols.KindSerial), "the device `TYPE`, serial or console")
		fl.BoolVar(&o.Domain.Force, "force", false, "direct: take the console over from another client")
		cmdutil.SetFlagGroup(fl, cmdutil.GroupDomain, "type", "force")
	}
	fl.StringVar(&o.Direct.TLSDir, "connect-tls-dir", "", "credentials toward QEMU in `DIR` (ca-cert.pem, and client-cert.pem/client-key.pem when QEMU verifies clients)")
	fl.BoolVar(&o.Direct.Insecure, "connect-insecure", false, "allow cleartext toward QEMU")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupDirect, "connect-tls-dir", "connect-insecure")

	fl.StringVar(&o.TLS.MinVersion, "tls-min-version", "1.2", "lowest TLS `VERSION` offered: 1.2 or 1.3")
	fl.StringSliceVar(&o.TLS.CipherSuites, "tls-cipher-suites", nil, "TLS 1.2 cipher `SUITES` allowed (comma-separated Go names; default: Go's secure set)")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupTLS, "tls-min-version", "tls-cipher-suites")

	fl.DurationVar(&o.Proxy.Timeout, "proxy-timeout", 20*time.Second, "give up connecting to the proxy after `DURATION`")
	fl.DurationVar(&o.Direct.Timeout, "handshake-timeout", 15*time.Second, "direct: give up connecting to QEMU and negotiating with it after `DURATION`")
	cmdutil.SetFlagGroup(fl, cmdutil.GroupTimeouts, "proxy-timeout", "handshake-timeout")

	// Former names: --tls-dir and --insecure meant the proxy's leg here
	// but the listener's on the daemons; --connect-timeout was the proxy's.
	cmdutil.DeprecatedAlias(fl, "tls-dir", "proxy-tls-dir")
	cmdutil.DeprecatedAlias(fl, "insecure", "proxy-insecure")
	cmdutil.DeprecatedAlias(fl, "connect-timeout", "proxy-timeout")

	AddProfileFlags(cmd, &o.Profile)
}

// Check applies the profile (see ProfileOptions.Apply) to the flags of
// cmd, decides the mode from the flags, the environment (f.Getenv) and
// args (DOMAIN, if any), and checks that they agree. Its only I/O is
// reading the client config file. cmd names the command in usage errors.
func (o *Options) Check(f *cmdutil.Factory, cmd *cobra.Command, args []string) error {
	o.mode, o.domain = 0, ""
	if err := o.Profile.Apply(f, cmd, &o.Proxy); err != nil {
		return err
	}
	if len(args) > 0 {
		o.domain = args[0]
	}
	proxy := o.Proxy.URL
	if proxy == "" {
		proxy = f.Getenv(EnvProxy)
	}
	switch {
	case o.domain != "" && o.Direct.Target != "":
		return &cmdutil.FlagError{Err: errors.New("give DOMAIN or --target, not both")}
	case o.domain != "" && proxy == "":
		o.mode = DirectDomain
		return o.checkView()
	case o.domain != "":
		o.mode = ProxyDomain
	case o.Direct.Target == "" && proxy == "":
		alternatives := "give DOMAIN (on a libvirt host) or --proxy URL (or " + EnvProxy + ") with --token-file"
		if o.graphics {
			alternatives = "give DOMAIN (on a libvirt host), --proxy URL (or " + EnvProxy + ") with --token-file, or --target HOST:PORT"
		}
		return &cmdutil.FlagError{Err: fmt.Errorf("no console given: %s; see '%s --help'", alternatives, cmd.CommandPath())}
	case o.Direct.Target == "":
		o.mode = ProxyToken
	case o.Proxy.URL != "" && !o.Profile.FromProfile("proxy"):
		// The environment's proxy and the profile's do not count:
		// --target says direct.
		return &cmdutil.FlagError{Err: errors.New("give --proxy or --target (direct mode), not both")}
	default:
		o.mode = DirectTarget
		return o.checkView()
	}
	u, err := ProxyURL(proxy, o.Proxy.Insecure)
	if err != nil {
		o.mode = 0
		return &cmdutil.FlagError{Err: err}
	}
	o.Proxy.URL = u
	return nil
}

// checkView refuses --view without the proxy: only the proxy can drop
// input, so a direct session cannot promise it.
func (o *Options) checkView() error {
	if o.Proxy.View {
		o.mode = 0
		return &cmdutil.FlagError{Err: errors.New("--view needs the proxy (--proxy or " + EnvProxy + "): a direct session cannot be view-only")}
	}
	return nil
}

// DomainArg returns DOMAIN from args ("" for none) for a command that
// takes a console from DOMAIN or from --token-file (open, vv), refusing
// both at once.
func DomainArg(cmd *cobra.Command, args []string) (string, error) {
	if len(args) == 0 {
		return "", nil
	}
	if cmd.Flags().Changed("token-file") {
		return "", &cmdutil.FlagError{Err: errors.New("give DOMAIN or --token-file, not both")}
	}
	return args[0], nil
}

// Mode is the mode Check decided (0 before Check).
func (o *Options) Mode() Mode { return o.mode }

// DomainName is the DOMAIN Check was given, or "".
func (o *Options) DomainName() string { return o.domain }
