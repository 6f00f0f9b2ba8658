package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// The SPICE CONNECT gateway: native SPICE clients (remote-viewer,
// virt-manager, GNOME Boxes: spice-gtk) reach SPICE through an HTTP proxy
// named by a .vv file's proxy= or SPICE_PROXY. spice-gtk opens one TCP
// connection per channel, sends "CONNECT host:port HTTP/1.0" with the
// .vv's host and tls-port and, when the proxy URL has user:password@,
// "Proxy-Authorization: Basic"; after a 2xx it runs TLS inside the tunnel
// (checked against the .vv's ca and host-subject, without SNI) and then
// the SPICE link.
//
// ConnectGateway terminates that TLS with the proxy's own certificate and
// hands the tunnel to the proxy's one session code path, as a websocket
// is handed once upgraded: the token is resolved (or the live SPICE
// session it opened is joined), a single-use token is spent once for the
// session, QEMU is dialled with the proxy's client credentials, the
// SPICE password is supplied by the proxy, and the Observer, the
// Limiter and the session bounds see every tunnel as they see websockets.
//
// The gateway is not an open proxy: the only CONNECT target it accepts
// is ConnectHost:ConnectPort, a name that never resolves (RFC 6761's
// .invalid), meaning "the console this credential opens"; anything else
// is 403 before the credential is looked at. The credential is the
// Proxy-Authorization password: the token, base64url-encoded
// (EncodeConnectToken) so that ':' and '@' never appear in the proxy URL;
// the user name is ignored (.vv files say ConnectUser). No credential, an
// undecodable one or an unknown token is 407 with Proxy-Authenticate.
const (
	// ConnectHost is the host of the one CONNECT target (a .vv file's host).
	ConnectHost = "console.virtconsole.invalid"
	// ConnectPort is the port of the one CONNECT target (a .vv file's
	// tls-port).
	ConnectPort = 5901
	// ConnectUser is the user name .vv files put in the proxy URL.
	ConnectUser = "virtconsole"
	// ConnectRealm is the realm of the gateway's Proxy-Authenticate.
	ConnectRealm = "virtconsole"
)

// ConnectTarget is the one host:port a ConnectGateway tunnels to.
var ConnectTarget = net.JoinHostPort(ConnectHost, strconv.Itoa(ConnectPort))

// EncodeConnectToken is token as the password of a gateway's proxy URL.
func EncodeConnectToken(token string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(token))
}

// ConnectToken returns the token of a CONNECT request: the password of
// its "Proxy-Authorization: Basic" credential, base64url-decoded (with or
// without padding); "" when there is none or it does not decode.
func ConnectToken(r *http.Request) string {
	scheme, cred, ok := strings.Cut(r.Header.Get("Proxy-Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return ""
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return ""
	}
	_, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return ""
	}
	tok, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(pass, "="))
	if err != nil {
		return ""
	}
	return string(tok)
}

// ConnectGateway is the http.Handler of a CONNECT listener in front of a
// Proxy (see ConnectTarget above). Serve it with an http.Server whose
// header size and read deadlines are bounded: the request is a few
// short headers.
type ConnectGateway struct {
	// Proxy serves the sessions. Required.
	Proxy *Proxy
	// TLSConfig returns the server TLS configuration inside the tunnel:
	// the certificate whose CA and subject the .vv file names. Required.
	TLSConfig func() *tls.Config
	// CA returns the PEM of the CA that signed TLSConfig's certificate,
	// for GET InfoPath; nil means the info carries no CA.
	CA func() []byte

	// Passthrough relays each tunnel's bytes to QEMU's TLS port as they
	// come, for deployments where QEMU's own certificate must be what the
	// viewer checks: no TLS inside the tunnel (TLSConfig is not used),
	// no link parsed, so the proxy neither supplies the SPICE password
	// (the .vv file carries it: POST InfoPath gives it to the token's
	// holder) nor sees which channel a tunnel is. A single-use token is
	// spent by the first CONNECT, which opens a grant bound to the
	// client's address for GrantTTL: CONNECTs with the same credential
	// from that address until then reach the same console (the session's
	// other channels); from another address, or later, they are 407.
	Passthrough bool
	// GrantTTL is a passthrough grant's lifetime; 0 means PassthroughGrantTTL.
	GrantTTL time.Duration
	// ConsoleCA returns the PEM of the CA QEMU's certificates are checked
	// against (the proxy's own, toward QEMU): a passthrough .vv file's
	// ca. Nil means the info carries no CA.
	ConsoleCA func() []byte

	mu     sync.Mutex
	grants map[string]*relayGrant // passthrough grants by token
}

// PassthroughGrantTTL is how long a passthrough gateway lets a spent
// single-use token's client open more channels: a session's first minute.
const PassthroughGrantTTL = time.Minute

// relayGrant is a single-use token's passthrough grant: the console the
// first CONNECT opened, for that client address, until expires.
type relayGrant struct {
	id      string // the session's ID in the log: "relay-" and the first tunnel's
	client  string
	target  protocols.Target
	expires time.Time
}

// InfoPath is where a ConnectGateway answers GET with its ConnectInfo
// (JSON): what a .vv file needs of it ('virtconsole vv' asks).
const InfoPath = "/spice-connect.json"

// ConnectInfo is what a .vv file needs to reach a ConnectGateway: the
// CONNECT target (host, tls-port), and the certificate the gateway
// presents inside the tunnel: its subject as spice-gtk's host-subject
// wants it (SPICESubject) and its CA (PEM). None of it is secret.
//
// A passthrough gateway's GET answer says Passthrough, with the CA of
// QEMU's certificates and no HostSubject (each console has its own);
// POST InfoPath with the token as the CONNECT's Proxy-Authorization
// answers for that token's console: QEMU's certificate subject and the
// SPICE password, which the .vv file must then carry.
type ConnectInfo struct {
	Host        string `json:"host"`
	TLSPort     int    `json:"tls_port"`
	HostSubject string `json:"host_subject,omitempty"`
	CA          string `json:"ca,omitempty"`
	Passthrough bool   `json:"passthrough,omitempty"`
	Password    string `json:"password,omitempty"`
}

func (g *ConnectGateway) info() (ConnectInfo, error) {
	i := ConnectInfo{Host: ConnectHost, TLSPort: ConnectPort}
	if g.Passthrough {
		i.Passthrough = true
		if g.ConsoleCA != nil {
			i.CA = string(g.ConsoleCA())
		}
		return i, nil
	}
	cfg := g.TLSConfig()
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return i, errors.New("the gateway has no certificate")
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		return i, err
	}
	if i.HostSubject, err = SPICESubject(leaf.RawSubject); err != nil {
		return i, err
	}
	if g.CA != nil {
		i.CA = string(g.CA())
	}
	return i, nil
}

// serveInfo answers GET InfoPath.
func (g *ConnectGateway) serveInfo(w http.ResponseWriter) {
	i, err := g.info()
	if err != nil {
		g.Proxy.logger().Error("SPICE CONNECT gateway info", "err", err)
		http.Error(w, "the gateway's certificate cannot be described; see its log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(i)
}

// x509 attribute type OIDs (RFC 5280 §4.1.2.4, RFC 4519) and the short
// names OpenSSL's X509_NAME_add_entry_by_txt knows them by.
var subjectNames = map[string]string{
	"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.9": "street",
	"2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.5": "serialNumber", "0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1": "emailAddress",
}

// SPICESubject formats a DER subject (x509.Certificate.RawSubject) as
// spice-gtk's host-subject: "key=value" pairs in the certificate's own
// order, separated by ", ", with ',' and '\' escaped by '\'. spice-gtk
// builds an X509_NAME from it in that order and compares it with the
// certificate's, so the order is the DER's, not RFC 2253's reversed one.
func SPICESubject(raw []byte) (string, error) {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) > 0 {
		return "", fmt.Errorf("certificate subject: not DER (%v)", err)
	}
	var parts []string
	for _, rdn := range rdns {
		for _, a := range rdn {
			name, ok := subjectNames[a.Type.String()]
			if !ok {
				return "", fmt.Errorf("certificate subject: attribute %s has no name spice-gtk knows", a.Type)
			}
			v, ok := a.Value.(string)
			if !ok {
				return "", fmt.Errorf("certificate subject: attribute %s is not a string", name)
			}
			v = strings.NewReplacer(`\`, `\\`, `,`, `\,`).Replace(v)
			parts = append(parts, name+"="+v)
		}
	}
	return strings.Join(parts, ", "), nil
}

// ServeHTTP serves one CONNECT tunnel, a SPICE channel.
func (g *ConnectGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := g.Proxy
	log := p.logger().With("peer", r.RemoteAddr, "via", "connect")
	if r.Method == http.MethodGet && r.URL.Path == InfoPath {
		g.serveInfo(w)
		return
	}
	if r.Method == http.MethodPost && r.URL.Path == InfoPath && g.Passthrough {
		g.serveConsoleInfo(w, r, log)
		return
	}
	if r.Method != http.MethodConnect {
		w.Header().Set("Allow", http.MethodConnect)
		p.refuse(w, r, log, fail(http.StatusMethodNotAllowed, nil, "this is a SPICE CONNECT gateway: only CONNECT %s is served", ConnectTarget))
		return
	}
	if !isConnectTarget(r.Host) {
		p.refuse(w, r, log, fail(http.StatusForbidden, nil, "CONNECT to %s only (the console the credential opens): this gateway is not an open proxy", ConnectTarget))
		return
	}
	// Viewers connect to the gateway directly: a front proxy's headers
	// would be the client's own, e.g. to escape the refused-token limit.
	r.Header.Del("X-Forwarded-For")
	r.Header.Del("X-Forwarded-Host")
	if g.Passthrough {
		host := p.clientAddr(r)
		p.serve(w, r, log, start, g.acceptRelay, func(ctx context.Context, token string, asked protocols.Role) (*upstream, *Error) {
			return g.openRelay(ctx, token, asked, host)
		})
		return
	}
	p.serve(w, r, log, start, g.accept, nil)
}

// isConnectTarget reports whether hostport is ConnectTarget.
func isConnectTarget(hostport string) bool {
	host, port, err := net.SplitHostPort(hostport)
	return err == nil && strings.EqualFold(strings.TrimSuffix(host, "."), ConnectHost) && port == strconv.Itoa(ConnectPort)
}

// connectRefusal is e as a CONNECT gateway answers it: no token, an
// undecodable or an unknown one is 407 with Proxy-Authenticate, which
// spice-gtk reports as "HTTP proxy authentication failed".
func connectRefusal(w http.ResponseWriter, e *Error) *Error {
	switch e.Status {
	case http.StatusUnauthorized:
		e = &Error{Status: http.StatusProxyAuthRequired, Err: e.Err, target: e.target,
			Reason: "no credential: send Proxy-Authorization: Basic with the token, base64url-encoded, as the password (the proxy= URL of 'virtconsole vv')"}
	case http.StatusNotFound:
		e = &Error{Status: http.StatusProxyAuthRequired, Err: e.Err, target: e.target, Reason: "proxy authentication failed: " + e.Reason}
	}
	if e.Status == http.StatusProxyAuthRequired {
		w.Header().Set("Proxy-Authenticate", `Basic realm="`+ConnectRealm+`"`)
	}
	return e
}

// accept answers the CONNECT with 200, runs TLS as the server inside the
// tunnel, and hands the TLS conn to the proxy's viewer handshake: the
// CONNECT tunnel's Proxy.accept.
func (g *ConnectGateway) accept(ctx context.Context, w http.ResponseWriter, r *http.Request, log *slog.Logger, up *upstream, sess *Session, arrived time.Time) (client, server net.Conn, ok bool) {
	p := g.Proxy
	failed := func(what string, err error) (net.Conn, net.Conn, bool) {
		up.closeConn()
		log.Warn(what, "err", err)
		p.startFailed(sess, arrived, fmt.Errorf("%s: %w", what, err))
		return nil, nil, false
	}
	conn, raw, err := openTunnel(ctx, w, r)
	if err != nil {
		return failed("CONNECT tunnel not opened", err)
	}
	tconn := tls.Server(raw, g.TLSConfig())
	if err := tconn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return failed("TLS inside the CONNECT tunnel failed", err)
	}
	conn.SetDeadline(time.Time{})
	return p.acceptViewer(ctx, tconn, log, up, sess, arrived)
}

// openTunnel hijacks the CONNECT's connection and answers 200; raw is
// the tunnel (conn, or conn with what the client sent before the 200),
// with ctx's deadline set on conn.
func openTunnel(ctx context.Context, w http.ResponseWriter, r *http.Request) (conn, raw net.Conn, err error) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	fmt.Fprintf(brw, "HTTP/%d.%d 200 Connection established\r\n\r\n", r.ProtoMajor, r.ProtoMinor)
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	raw = conn
	if brw.Reader.Buffered() > 0 {
		// The client sent its TLS hello without waiting for the 200.
		raw = &bufferedConn{Conn: conn, r: brw.Reader}
	}
	return conn, raw, nil
}

// bufferedConn is a conn whose first bytes were read into r already.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
