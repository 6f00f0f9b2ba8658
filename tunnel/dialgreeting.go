package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// Waiting for a server that speaks first (RFB sends its version on
// accept): the first attempt gives it firstByteWait, each redial twice
// the last, up to maxFirstByteWait, all within the caller's ctx. Tests
// shorten them.
var (
	firstByteWait    = time.Second
	maxFirstByteWait = 4 * time.Second
)

// greetsFirst reports whether the console at t speaks before we do and
// we dial it ourselves: RFB (QEMU's ProtocolVersion) in the clear, where
// VeNCrypt's TLS comes later. TLS from the first byte has us speak first.
func greetsFirst(t protocols.Target) bool {
	return t.Kind == protocols.KindVNC && t.Dial == nil && !t.TLSFromFirstByte()
}

// dialGreeting dials address for a server that speaks first and waits for
// its first byte, redialling when it does not come in time.
//
// QEMU listens for VNC with a backlog of 1. A burst of connections
// overflows it, the kernel answers with SYN cookies, and a connection
// whose final ACK is then dropped looks established to us but was never
// accepted: QEMU will never greet it, and since we send nothing first no
// retransmission revives it. So: dials to one address from this process
// go one at a time until the greeting arrives (which QEMU sends within
// milliseconds of accepting), and a silent connection is closed and
// dialled again (another process can still overflow the backlog).
//
// The conn returned replays the byte read. If ctx ends first, the last
// conn is returned as it is, so that the handshake fails on it in its own
// words (stuck reading the version); a read error other than a timeout
// (QEMU closed) is replayed the same way.
func dialGreeting(ctx context.Context, d Dialer, address string) (net.Conn, error) {
	unlock, err := dialGates.lock(ctx, address)
	if err != nil {
		return nil, fmt.Errorf("waiting for other connections to %s: %w", address, err)
	}
	defer unlock()
	wait := firstByteWait
	for {
		// The last attempt is the one that would outlast ctx.
		dl, ok := ctx.Deadline()
		last := ok && time.Until(dl) <= wait
		actx, cancel := context.WithTimeout(ctx, wait)
		c, first, err := dialFirstByte(actx, d, address)
		// The dialer may time out on actx's deadline before actx does.
		var ne net.Error
		slow := actx.Err() != nil || errors.As(err, &ne) && ne.Timeout()
		cancel()
		switch {
		case c == nil && (last || !slow || ctx.Err() != nil):
			return nil, err // refused, unreachable, or out of time
		case c == nil:
			// A connect that outlasted wait had its SYN dropped; a new
			// one is as good as the kernel's retransmission.
		case err == nil:
			return &greetedConn{Conn: c, first: first}, nil
		case last || ctx.Err() != nil:
			return c, nil
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return &greetedConn{Conn: c, err: err}, nil
		default:
			c.Close() // never accepted, or too slow: try again
		}
		wait = min(2*wait, maxFirstByteWait)
	}
}

// dialFirstByte dials address and reads one byte, both bounded by ctx. It
// returns a nil conn if the dial failed, else the conn (its deadline
// cleared) and the read's outcome.
func dialFirstByte(ctx context.Context, d Dialer, address string) (net.Conn, byte, error) {
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, 0, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetReadDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	var b [1]byte
	_, err = c.Read(b[:]) // a net.Conn returns n == 1 or an error
	stop()
	c.SetReadDeadline(time.Time{})
	if err != nil && ctx.Err() != nil {
		err = os.ErrDeadlineExceeded
	}
	return c, b[0], err
}

// greetedConn is a conn whose first byte (or first read's error) was
// read by dialGreeting; Read returns it before reading on. Like any
// handshake's conn it is read by one goroutine at a time.
type greetedConn struct {
	net.Conn
	first byte
	err   error // replayed instead of first when set
	used  bool
}

func (c *greetedConn) Read(b []byte) (int, error) {
	if c.used || len(b) == 0 {
		return c.Conn.Read(b)
	}
	c.used = true
	if c.err != nil {
		return 0, c.err
	}
	b[0] = c.first
	return 1, nil
}

// CloseWrite half-closes the conn below, so that Join still can.
func (c *greetedConn) CloseWrite() error {
	if cw, ok := c.Conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// NetConn returns the conn below, as tls.Conn's does.
func (c *greetedConn) NetConn() net.Conn { return c.Conn }

// dialGates serialises dials per address within this process.
var dialGates = gates{m: make(map[string]*gate)}

type gates struct {
	mu sync.Mutex
	m  map[string]*gate
}

type gate struct {
	ch   chan struct{} // holds a token while someone dials
	refs int           // holders and waiters; the entry goes at 0
}

// lock waits for address's gate or ctx's end, and returns its release.
func (g *gates) lock(ctx context.Context, address string) (unlock func(), err error) {
	g.mu.Lock()
	e := g.m[address]
	if e == nil {
		e = &gate{ch: make(chan struct{}, 1)}
		g.m[address] = e
	}
	e.refs++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(g.m, address)
		}
		g.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
