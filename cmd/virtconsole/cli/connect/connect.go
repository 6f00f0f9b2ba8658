// Package connect is what the client commands (serial, vnc, spice) share:
// the proxy and token flags, reading the token without it ever touching
// the command line, and dialling the proxy's websocket with errors mapped
// to exit codes.
package connect

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Environment variables the client commands read.
const (
	EnvProxy = "VIRTCONSOLE_PROXY"
	EnvToken = "VIRTCONSOLE_TOKEN"
)

// ProxyOptions are the flags for reaching a console through the proxy.
type ProxyOptions struct {
	Proxy     string
	TokenFile string
	CAFile    string
	TLSDir    string
	Insecure  bool
	Timeout   time.Duration
}

// AddProxyFlags registers the proxy flags on cmd.
func AddProxyFlags(cmd *cobra.Command, o *ProxyOptions) {
	fl := cmd.Flags()
	fl.StringVar(&o.Proxy, "proxy", "", "websocket proxy `URL`, e.g. wss://proxy.example:6443 (env "+EnvProxy+")")
	fl.StringVar(&o.TokenFile, "token-file", "", "read the console token from `FILE` (- for the first line of stdin; env "+EnvToken+" otherwise)")
	fl.StringVar(&o.CAFile, "ca-file", "", "trust the proxy's certificate if signed by the CA in `FILE` (default: system roots)")
	fl.StringVar(&o.TLSDir, "tls-dir", "", "present client-cert.pem/client-key.pem from `DIR` to a proxy that requires client certificates (ca-cert.pem there is trusted too)")
	fl.BoolVar(&o.Insecure, "insecure", false, "allow a ws:// proxy URL (token and console data in cleartext)")
	fl.DurationVar(&o.Timeout, "connect-timeout", 20*time.Second, "give up connecting after `DURATION`")
}

// Resolve fills in defaults from the environment and checks the options,
// for cmd when it was given nothing else to connect to. Without a proxy,
// the usage error lists alternatives: what cmd could be given instead,
// e.g. "give DOMAIN (on a libvirt host) or --proxy URL with --token-file".
// The proxy may come from the environment (EnvProxy).
func (o *ProxyOptions) Resolve(f *cmdutil.Factory, cmd *cobra.Command, alternatives string) error {
	if o.Proxy == "" {
		o.Proxy = f.Getenv(EnvProxy)
	}
	if o.Proxy == "" {
		return &cmdutil.FlagError{Err: fmt.Errorf("no console given: %s; see '%s --help'", alternatives, cmd.CommandPath())}
	}
	return o.check()
}

// ResolveOptional is Resolve for commands that can do without a proxy:
// it reports whether one was given (flag or environment).
func (o *ProxyOptions) ResolveOptional(f *cmdutil.Factory) (bool, error) {
	if o.Proxy == "" {
		o.Proxy = f.Getenv(EnvProxy)
	}
	if o.Proxy == "" {
		return false, nil
	}
	return true, o.check()
}

func (o *ProxyOptions) check() error {
	u, err := ProxyURL(o.Proxy, o.Insecure)
	if err != nil {
		return &cmdutil.FlagError{Err: err}
	}
	o.Proxy = u
	return nil
}

// ProxyURL normalises a proxy URL: an empty path becomes /websockify.
// Cleartext (ws) needs insecure. https:// and http:// are refused with the
// websocket URL to use instead: the proxy is not a web page.
func ProxyURL(raw string, insecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("proxy URL %q: want wss://HOST:PORT[/PATH]", raw)
	}
	switch u.Scheme {
	case "https", "http":
		want := "wss"
		with := ""
		if u.Scheme == "http" {
			want = "ws"
			if !insecure {
				with = " with --insecure"
			}
		}
		u.Scheme = want
		return "", fmt.Errorf("proxy URL %q: use %s (the proxy's websocket URL)%s", raw, u.String(), with)
	case "wss":
	case "ws":
		if !insecure {
			return "", fmt.Errorf("proxy URL %q is cleartext; use wss:// or pass --insecure", raw)
		}
	default:
		return "", fmt.Errorf("proxy URL %q: scheme must be wss (or ws with --insecure)", raw)
	}
	if u.RawQuery != "" {
		return "", fmt.Errorf("proxy URL must not carry a query (tokens go in --token-file or %s)", EnvToken)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/websockify"
	}
	return u.String(), nil
}

// ReadToken returns the token from --token-file (- reads one line from
// stdin, byte by byte so that the rest of stdin stays for the console) or
// the environment. A token file that its group or others can read gets a
// warning on stderr.
func (o *ProxyOptions) ReadToken(f *cmdutil.Factory) (string, error) {
	var tok string
	switch {
	case o.TokenFile == "-":
		line, err := readLine(f.IOStreams.In)
		if err != nil {
			return "", cmdutil.WithCode(cmdutil.ExitUsage, fmt.Errorf("token from stdin: %w", err))
		}
		tok = line
	case o.TokenFile != "":
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return "", cmdutil.WithCode(cmdutil.ExitUsage, fmt.Errorf("token file: %w", err))
		}
		if w := resolver.ExposedFileWarning(o.TokenFile); w != "" {
			fmt.Fprintln(f.IOStreams.ErrOut, "warning: "+w)
		}
		tok = string(b)
	default:
		tok = f.Getenv(EnvToken)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", cmdutil.WithCode(cmdutil.ExitRefused, errors.New("no token: give --token-file FILE (or -) or set "+EnvToken))
	}
	return tok, nil
}

func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 4096 {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b), nil
			}
			b = append(b, one[0])
		}
		if err == io.EOF {
			return string(b), nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", errors.New("line too long")
}

// Dial opens a websocket to the proxy carrying token in an Authorization
// header (never in the URL), and maps failures to exit codes.
func (o *ProxyOptions) Dial(ctx context.Context, token string) (net.Conn, error) {
	var creds *tlscreds.Creds
	if o.TLSDir != "" {
		c, err := tlscreds.Load(o.TLSDir, tlscreds.RoleClient)
		if err != nil {
			return nil, cmdutil.WithCode(cmdutil.ExitTLS, err)
		}
		creds = c
	}
	if o.CAFile != "" {
		c, err := tlscreds.LoadCAFile(o.CAFile)
		if err != nil {
			return nil, cmdutil.WithCode(cmdutil.ExitTLS, err)
		}
		if creds == nil {
			creds = c
		} else {
			creds.CAs = c.CAs
		}
	}
	u, _ := url.Parse(o.Proxy)
	opts := &wsconn.DialOptions{Subprotocols: []string{"binary"}}
	if u.Scheme == "wss" {
		opts.TLSConfig = creds.ClientConfig(tlscreds.DefaultPolicy(), u.Hostname())
	}
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	conn, err := wsconn.Dial(ctx, o.Proxy, h, opts)
	if err != nil {
		return nil, classify(u.Host, creds, err)
	}
	return conn, nil
}

// classify maps a websocket dial failure to an exit code and a message
// that says what to do.
func classify(host string, creds *tlscreds.Creds, err error) error {
	var he *wsconn.HandshakeError
	if errors.As(err, &he) {
		reason := he.Reason
		if reason == "" {
			reason = http.StatusText(he.StatusCode)
		}
		msg := fmt.Errorf("proxy %s refused the console (HTTP %d): %s", host, he.StatusCode, reason)
		switch he.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests:
			return cmdutil.WithCode(cmdutil.ExitRefused, msg)
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return cmdutil.WithCode(cmdutil.ExitUnreachable, msg)
		}
		return cmdutil.WithCode(cmdutil.ExitFailure, msg)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if e := tlscreds.ExplainHandshakeError(err, creds, "proxy at "+host); e != err {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			// tlscreds says what is wrong and, after the last "; ", what
			// to do in words; here the fix is a flag.
			msg := e.Error()
			if i := strings.LastIndex(msg, "; "); i >= 0 {
				msg = msg[:i]
			}
			e = &tlscreds.HandshakeError{Msg: msg + "; pass --ca-file with the CA that signed it", Err: err}
		}
		return cmdutil.WithCode(cmdutil.ExitTLS, e)
	}
	if IsTLSError(err) {
		return cmdutil.WithCode(cmdutil.ExitTLS, fmt.Errorf("proxy %s: %w", host, err))
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("proxy %s: connection refused; is virtconsole server running there?", host))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("proxy %s: no answer in time; check the address and firewalls", host))
	}
	return cmdutil.WithCode(cmdutil.ExitUnreachable, fmt.Errorf("proxy %s: %w", host, err))
}

// IsTLSError reports whether err is a TLS or certificate failure, for
// exit code ExitTLS. Errors from crypto/tls and crypto/x509 say so in
// their text, through however many layers wrapped them.
func IsTLSError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "tls:") || strings.Contains(s, "x509:") || strings.Contains(s, "certificate")
}

// ClientCreds loads the credentials for dialling out (QEMU, a remote
// resolver) from dir, with role client.
func ClientCreds(dir string) (*tlscreds.Creds, error) {
	creds, err := tlscreds.LoadClient(dir)
	if err != nil {
		return nil, cmdutil.WithCode(cmdutil.ExitTLS, err)
	}
	return creds, nil
}
