package wsconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/websocket"
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

	// ReadBufferSize is the size of the buffer a Conn reads frames
	// through, held for the Conn's life (0: DefaultReadBufferSize).
	// WriteBufferSize is that of the buffer a Write frames a message in,
	// taken from a shared pool for the duration of the Write (0:
	// DefaultWriteBufferSize). Messages larger than either buffer are read
	// and written past it, not split.
	ReadBufferSize  int
	WriteBufferSize int
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
	checkOrigin := opts.CheckOrigin
	if checkOrigin == nil {
		checkOrigin = func(*http.Request) bool { return true }
	}
	wbs := orDefault(opts.WriteBufferSize, DefaultWriteBufferSize)
	u := websocket.Upgrader{
		ReadBufferSize:  orDefault(opts.ReadBufferSize, DefaultReadBufferSize),
		WriteBufferSize: wbs,
		WriteBufferPool: writePool(wbs),
		Subprotocols:    protos,
		CheckOrigin:     checkOrigin,
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			w.Header().Set("Sec-Websocket-Version", "13")
			http.Error(w, reason.Error(), status)
		},
	}
	ws, err := u.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	return newConn(ws, opts.KeepAlive, opts.DeadPeerTimeout, opts.WriteTimeout), nil
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

	// gorilla bounds the handshake by ctx's deadline but not by its
	// cancellation: set a past deadline on the transport when ctx ends.
	var (
		mu  sync.Mutex
		raw net.Conn
	)
	netDial := opts.NetDialContext
	if netDial == nil {
		netDial = new(net.Dialer).DialContext
	}
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			c, err := netDial(ctx, network, address)
			if err == nil {
				mu.Lock()
				raw = c
				mu.Unlock()
			}
			return c, err
		},
		TLSClientConfig: opts.TLSConfig,
		Subprotocols:    opts.Subprotocols,
		ReadBufferSize:  DefaultReadBufferSize,
		// A client masks every byte it sends in this buffer and gorilla
		// splits messages into frames of its size.
		WriteBufferSize: DefaultWriteBufferSize,
		WriteBufferPool: writePool(DefaultWriteBufferSize),
	}
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if raw != nil {
			raw.SetDeadline(time.Unix(1, 0))
		}
	})
	ws, resp, err := d.DialContext(ctx, u.String(), header)
	if !stop() {
		if ws != nil {
			ws.NetConn().Close()
		}
		return nil, fmt.Errorf("websocket: dial %s: %w", where, context.Cause(ctx))
	}
	if err != nil {
		if errors.Is(err, websocket.ErrBadHandshake) && resp != nil {
			return nil, handshakeError(resp)
		}
		return nil, fmt.Errorf("websocket: dial %s: %w", where, err)
	}
	return newConn(ws, opts.KeepAlive, opts.DeadPeerTimeout, opts.WriteTimeout), nil
}

// handshakeError describes a response that did not switch protocols.
func handshakeError(resp *http.Response) error {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return &HandshakeError{StatusCode: resp.StatusCode, Reason: "invalid websocket upgrade response"}
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024)) // gorilla kept at most 1 KiB
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

func orDefault(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// writePools holds one shared write-buffer pool per buffer size (gorilla
// needs a pool per size).
var writePools sync.Map // int -> *sync.Pool

func writePool(size int) *sync.Pool {
	if p, ok := writePools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := writePools.LoadOrStore(size, new(sync.Pool))
	return p.(*sync.Pool)
}
