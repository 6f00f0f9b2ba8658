package connect

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

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
				with = " with --proxy-insecure"
			}
		}
		u.Scheme = want
		return "", fmt.Errorf("proxy URL %q: use %s (the proxy's websocket URL)%s", raw, u.String(), with)
	case "wss":
	case "ws":
		if !insecure {
			return "", fmt.Errorf("proxy URL %q is cleartext; use wss:// or pass --proxy-insecure", raw)
		}
	default:
		return "", fmt.Errorf("proxy URL %q: scheme must be wss (or ws with --proxy-insecure)", raw)
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
// stdin, byte by byte so that the rest of stdin stays for the console),
// the environment or the profile's token-command (Apply leaves it unset
// when the environment has a token). A token file that its group or others can read gets a
// warning on stderr. No token is cmdutil.ErrNoToken.
func (o *ProxyOptions) ReadToken(f *cmdutil.Factory) (string, error) {
	var tok string
	switch {
	case o.TokenFile == "-":
		line, err := readLine(f.IOStreams.In)
		if err != nil {
			return "", &cmdutil.FlagError{Err: fmt.Errorf("token from stdin: %w", err)}
		}
		tok = line
	case o.TokenFile != "":
		b, err := os.ReadFile(o.TokenFile)
		if err != nil {
			return "", &cmdutil.FlagError{Err: fmt.Errorf("token file: %w", err)}
		}
		if w := resolver.ExposedFileWarning(o.TokenFile); w != "" {
			fmt.Fprintln(f.IOStreams.ErrOut, "warning: "+w)
		}
		tok = string(b)
	case o.tokenCommand != "":
		t, err := runTokenCommand(f, o.tokenCommand, o.tokenCommandOf)
		if err != nil {
			return "", err
		}
		tok = t
	default:
		tok = f.Getenv(EnvToken)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("%w: give --token-file FILE (or -) or set %s", cmdutil.ErrNoToken, EnvToken)
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

// proxyCreds loads what the client presents to and trusts of the proxy:
// --proxy-tls-dir's client certificate and CA, --ca-file's CA (which wins).
// Nil means the system roots and no certificate.
func (o *ProxyOptions) proxyCreds() (*tlscreds.Creds, error) {
	var creds *tlscreds.Creds
	if o.TLSDir != "" {
		c, err := tlscreds.Load(o.TLSDir, tlscreds.RoleClient)
		if err != nil {
			return nil, err
		}
		creds = c
	}
	if o.CAFile != "" {
		c, err := tlscreds.LoadCAFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		if creds == nil {
			creds = c
		} else {
			creds.CAs = c.CAs
		}
	}
	return creds, nil
}

// proxyLeg is a route through the proxy.
type proxyLeg struct {
	url     string
	host    string
	creds   *tlscreds.Creds // nil: system roots, no client certificate
	policy  tlscreds.Policy
	timeout time.Duration
	tokens  *tokenSource
	view    bool // ask for a view-only session
}

// dial opens a websocket to the proxy carrying a token in an
// Authorization header (never in the URL). Closing the conn ends the
// token's session (see tokenSource).
func (p *proxyLeg) dial(ctx context.Context) (*Conn, error) {
	token, release, err := p.tokens.get(ctx)
	if err != nil {
		return nil, err
	}
	opts := &wsconn.DialOptions{Subprotocols: []string{"binary"}}
	if strings.HasPrefix(p.url, "wss:") {
		opts.TLSConfig = p.creds.ClientConfig(p.policy, p.host)
	}
	if p.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	if p.view {
		h.Set(protocols.RoleHeader, string(protocols.RoleView))
	}
	conn, err := wsconn.Dial(ctx, p.url, h, opts)
	if err != nil {
		release()
		return nil, p.dialError(err)
	}
	return &Conn{Conn: conn, release: release}, nil
}

// dialError says, in one line, why the proxy could not be reached or what
// it answered, and what to do.
func (p *proxyLeg) dialError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	var msg string
	var he *wsconn.HandshakeError
	switch e := tlscreds.ExplainHandshakeError(err, p.creds, "proxy at "+p.host); {
	case errors.As(err, &he):
		reason := he.Reason
		if reason == "" {
			reason = http.StatusText(he.StatusCode)
		}
		msg = fmt.Sprintf("proxy %s refused the console (HTTP %d): %s", p.host, he.StatusCode, reason)
	case e != err:
		msg = e.Error()
		err = e // keeps err in its chain
		if _, ok := errors.AsType[x509.UnknownAuthorityError](err); ok {
			// tlscreds says what is wrong and, after the last "; ",
			// what to do in words; here the fix is a flag.
			if i := strings.LastIndex(msg, "; "); i >= 0 {
				msg = msg[:i]
			}
			msg += "; pass --ca-file with the CA that signed it"
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		msg = fmt.Sprintf("proxy %s: connection refused; is virtconsole server running there?", p.host)
	case errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("proxy %s: no answer in time; check the address and firewalls", p.host)
	default:
		msg = fmt.Sprintf("proxy %s: %s", p.host, err)
	}
	return &cmdutil.DialError{Msg: msg, Err: err}
}

// ClientCreds loads the credentials for dialling out (QEMU, a remote
// resolver) from dir, with role client. Failures are
// *tlscreds.CheckError (ExitTLS).
func ClientCreds(dir string) (*tlscreds.Creds, error) {
	return tlscreds.LoadClient(dir)
}

// hostOf returns the host:port of a proxy URL, for messages.
func hostOf(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return u.Host
	}
	return rawURL
}
