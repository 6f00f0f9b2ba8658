// Package connlimit bounds how many connections one client address may
// hold open on a listener, so that one address cannot take every file
// descriptor of a daemon (nginx's limit_conn): its other clients are
// still accepted and served.
package connlimit

import (
	"net"
	"sync"
)

// Listener wraps a net.Listener. Accept returns only connections whose
// client address (the remote IP, without the port) holds fewer than
// PerAddress open connections; one beyond that is closed at once, before
// any byte is read or written, and Accept goes on to the next. A
// connection counts until its first Close, which may come from any
// goroutine (an http.Server, or the owner of a hijacked one).
//
// Wrap the raw TCP listener, beneath TLS, so that refused connections
// cost no handshake.
type Listener struct {
	net.Listener
	// PerAddress is the bound; zero or less means none.
	PerAddress int
	// Refused, if set, is called with the address of each connection
	// closed for being over the bound (e.g. to count or log it,
	// sparingly). It must not block.
	Refused func(host string)

	mu   sync.Mutex
	open map[string]int
}

// New returns l bounded to perAddress connections per client address.
func New(l net.Listener, perAddress int) *Listener {
	return &Listener{Listener: l, PerAddress: perAddress}
}

// Accept waits for and returns the next connection within the bound.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.PerAddress <= 0 {
			return c, nil
		}
		host := hostOf(c.RemoteAddr())
		if l.take(host) {
			return &conn{Conn: c, release: func() { l.release(host) }}, nil
		}
		c.Close()
		if l.Refused != nil {
			l.Refused(host)
		}
	}
}

// Open returns the number of connections host holds open now.
func (l *Listener) Open(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[host]
}

func (l *Listener) take(host string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[host] >= l.PerAddress {
		return false
	}
	if l.open == nil {
		l.open = make(map[string]int)
	}
	l.open[host]++
	return true
}

func (l *Listener) release(host string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// The map only holds addresses with open connections: its size is
	// bounded by the file descriptors, not by how many clients came.
	if l.open[host]--; l.open[host] <= 0 {
		delete(l.open, host)
	}
}

// conn gives its slot back on its first Close.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Unwrap returns the conn c counts, so that a layer above (a websocket)
// can read and write the socket itself (writev, reading without a
// buffer while idle); it must still close c, which gives the slot back.
func (c *conn) Unwrap() net.Conn { return c.Conn }

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
