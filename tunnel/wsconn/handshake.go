package wsconn

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Options configure the server side of a websocket (Upgrade).
type Options struct {
	// Subprotocols lists the subprotocols the server speaks, in its order
	// of preference. The first one the client offered is chosen; if the
	// client offered none of them, or none at all, the upgrade goes ahead
	// without a subprotocol. Nil means []string{"binary"} (noVNC,
	// spice-html5).
	Subprotocols []string

	// CheckOrigin reports whether the request's Origin is acceptable.
	// Nil allows every origin: the caller is expected to check.
	CheckOrigin func(*http.Request) bool

	// KeepAlive is the interval between pings (0: DefaultKeepAlive,
	// < 0: no pings). DeadPeerTimeout is how long a Read waits for
	// anything, data or pong, before giving the peer up (0:
	// DefaultDeadPeerTimeout, < 0: never). Keep KeepAlive well under
	// DeadPeerTimeout.
	KeepAlive       time.Duration
	DeadPeerTimeout time.Duration

	// WriteTimeout bounds each frame write, data or control, so that a
	// peer that stops reading (while it may go on sending, pings
	// included) cannot hold a Write forever: the Write fails with a
	// timeout (0: the dead-peer timeout, < 0: no bound).
	WriteTimeout time.Duration
}

// Upgrade answers the websocket handshake in r and returns the websocket as
// a *Conn. When the request is not an acceptable websocket handshake,
// Upgrade has already answered it with an HTTP error and returns an error.
func Upgrade(w http.ResponseWriter, r *http.Request, opts *Options) (net.Conn, error) {
	if opts == nil {
		opts = new(Options)
	}
	protos := opts.Subprotocols
	if protos == nil {
		protos = []string{"binary"}
	}
	refuse := func(status int, reason string) error {
		w.Header().Set("Sec-Websocket-Version", "13")
		http.Error(w, reason, status)
		return errors.New(reason)
	}
	if err := CheckUpgrade(r); err != nil {
		ue := err.(*UpgradeError)
		return nil, refuse(ue.Status, "websocket: "+ue.Reason)
	}
	if opts.CheckOrigin != nil && !opts.CheckOrigin(r) {
		return nil, refuse(http.StatusForbidden, "websocket: request origin not allowed")
	}
	proto := chooseSubprotocol(r.Header, protos)

	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, refuse(http.StatusInternalServerError, "websocket: cannot take the connection over: "+err.Error())
	}
	if brw.Reader.Buffered() > 0 {
		// Frames before the handshake's answer: not a websocket client.
		nc.Close()
		return nil, errors.New("websocket: client sent data before the handshake completed")
	}
	resp := make([]byte, 0, 160)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = append(resp, acceptKey(r.Header.Get("Sec-Websocket-Key"))...)
	if proto != "" {
		resp = append(resp, "\r\nSec-WebSocket-Protocol: "...)
		resp = append(resp, proto...)
	}
	resp = append(resp, "\r\n\r\n"...)
	// net/http cleared the deadlines it set; bound this write like a
	// frame's.
	nc.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout))
	if _, err := nc.Write(resp); err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket: writing the handshake's answer: %w", err)
	}
	nc.SetWriteDeadline(time.Time{})
	return newConn(nc, true, proto, opts.KeepAlive, opts.DeadPeerTimeout, opts.WriteTimeout), nil
}

// handshakeWriteTimeout bounds the write of the server's handshake answer.
const handshakeWriteTimeout = 10 * time.Second

// websocketGUID is appended to the client's key for the accept value
// (RFC 6455, section 1.3).
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// acceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// chooseSubprotocol picks the first of ours that the client offered, or
// "" when it offered none of them.
func chooseSubprotocol(h http.Header, ours []string) string {
	for _, p := range ours {
		if headerHasToken(h, "Sec-Websocket-Protocol", p) {
			return p
		}
	}
	return ""
}

// DialOptions configure the client side of a websocket (Dial).
type DialOptions struct {
	// TLSConfig is used for wss URLs. Nil means the system roots.
	TLSConfig *tls.Config
	// Subprotocols are offered to the server, in order of preference.
	Subprotocols []string
	// NetDialContext opens the TCP connection (nil: a zero net.Dialer).
	NetDialContext func(ctx context.Context, network, address string) (net.Conn, error)
	// KeepAlive, DeadPeerTimeout and WriteTimeout are as in Options.
	KeepAlive       time.Duration
	DeadPeerTimeout time.Duration
	WriteTimeout    time.Duration
}

// HandshakeError is returned by Dial when the server answered the
// handshake with an HTTP error instead of switching protocols.
type HandshakeError struct {
	StatusCode int    // HTTP status, e.g. 404
	Reason     string // first line of the response body, trimmed, at most ~200 bytes
}

func (e *HandshakeError) Error() string {
	s := fmt.Sprintf("websocket handshake refused: HTTP %d", e.StatusCode)
	if t := http.StatusText(e.StatusCode); t != "" {
		s += " " + t
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// maxReason bounds the text taken from a peer for an error message.
const maxReason = 200

// Dial opens a websocket to rawURL (ws:// or wss://; http:// and https://
// are taken to mean the same) and returns it as a *Conn. The handshake,
// TLS included, is bounded by ctx. header is sent with the request (for
// instance Authorization); the subprotocols come from opts.
//
// Errors never contain the URL's query or user information, where tokens
// may be. A refused handshake is a *HandshakeError.
func Dial(ctx context.Context, rawURL string, header http.Header, opts *DialOptions) (net.Conn, error) {
	if opts == nil {
		opts = new(DialOptions)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("websocket: malformed URL") // url.Error would quote it
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("websocket: URL scheme %q: want ws or wss", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("websocket: URL has no host")
	}
	u.User = nil
	where := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()

	host := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "wss" {
			port = "443"
		}
		host = net.JoinHostPort(u.Hostname(), port)
	}
	netDial := opts.NetDialContext
	if netDial == nil {
		netDial = new(net.Dialer).DialContext
	}
	raw, err := netDial(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("websocket: dial %s: %w", where, err)
	}
	// Bound the handshake by ctx's cancellation, not only its deadline.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	c, err := clientHandshake(ctx, raw, u, header, opts)
	if !stop() {
		raw.Close()
		return nil, fmt.Errorf("websocket: dial %s: %w", where, context.Cause(ctx))
	}
	if err != nil {
		raw.Close()
		var he *HandshakeError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, fmt.Errorf("websocket: dial %s: %w", where, err)
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

// clientHandshake runs TLS for wss and the opening handshake (RFC 6455,
// section 4.1) on raw.
func clientHandshake(ctx context.Context, raw net.Conn, u *url.URL, header http.Header, opts *DialOptions) (*Conn, error) {
	nc := raw
	if u.Scheme == "wss" {
		cfg := opts.TLSConfig
		if cfg == nil {
			cfg = new(tls.Config)
		}
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName = u.Hostname()
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		nc = tc
	}

	var k [16]byte
	crand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Scheme: "http", Host: u.Host, Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       u.Host,
	}
	for name, v := range header {
		req.Header[name] = v
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", key)
	req.Header.Set("Sec-WebSocket-Version", "13")
	if len(opts.Subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(opts.Subprotocols, ", "))
	}
	if err := req.Write(nc); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 4<<10)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		!headerHasToken(resp.Header, "Upgrade", "websocket") ||
		!headerHasToken(resp.Header, "Connection", "upgrade") ||
		resp.Header.Get("Sec-Websocket-Accept") != acceptKey(key) {
		return nil, handshakeError(resp)
	}
	proto := resp.Header.Get("Sec-Websocket-Protocol")
	if proto != "" && !headerHasToken(req.Header, "Sec-Websocket-Protocol", proto) {
		return nil, &HandshakeError{StatusCode: resp.StatusCode, Reason: "the server chose a subprotocol that was not offered"}
	}
	c := newConn(nc, false, proto, opts.KeepAlive, opts.DeadPeerTimeout, opts.WriteTimeout)
	if n := br.Buffered(); n > 0 {
		// Frames the server sent right behind its answer.
		c.prefix, _ = br.Peek(n)
		c.prefix = slices.Clone(c.prefix)
	}
	return c, nil
}

// handshakeError describes a response that did not switch protocols.
func handshakeError(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return &HandshakeError{StatusCode: resp.StatusCode, Reason: "invalid websocket upgrade response"}
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024)) // a refusal's first line is all we show
	}
	line, _, _ := strings.Cut(string(body), "\n")
	return &HandshakeError{StatusCode: resp.StatusCode, Reason: sanitize(line, maxReason)}
}

// sanitize makes text from a peer fit for a one-line error message: valid
// UTF-8, no control characters (a terminal would obey them), trimmed, and
// at most max bytes.
func sanitize(s string, max int) string {
	s = strings.TrimSpace(strings.ToValidUTF8(s, "\uFFFD"))
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			r = ' '
		}
		if b.Len()+utf8.RuneLen(r) > max {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}
