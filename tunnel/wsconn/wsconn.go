// Package wsconn makes a websocket (RFC 6455) a net.Conn. It is the only
// package that knows gorilla/websocket.
//
// A Conn carries a byte stream: each Write sends one binary message, and
// Read streams across message boundaries, returning a message in pieces
// when the caller's buffer is smaller than it (text messages are read as
// data too). A close frame with a normal code (1000, 1001, or none) reads
// as io.EOF; any other code is a *CloseError.
//
// CloseWrite sends a close frame and leaves reading open until the peer's
// close frame, so a Conn half-closes like a TCP conn: when both ends are
// Conns, the peer reads io.EOF and can go on writing. A received close
// frame is not answered automatically; it is answered by this side's
// CloseWrite or Close.
//
// Close sends close code 1000 (normal closure); CloseWithReason sends a
// code and reason of the caller's, e.g. CloseGoingAway or
// CloseInternalError, so that the peer can tell a failure from an end.
// The close frame a peer sent is kept (PeerClose) even when Read reports
// it as io.EOF.
//
// Every Conn pings its peer (Options.KeepAlive) and gives up on a peer
// from which nothing, data or pong, arrives for DeadPeerTimeout while a
// Read waits: the Conn is closed with ClosePeerTimeout and Read returns an
// error wrapping ErrPeerTimeout. A peer that stops reading is given up
// the same way: a Write (or ping, pong or close frame) that cannot go out
// within WriteTimeout fails, which a ping the peer sends does not delay.
package wsconn

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Defaults for zero option values.
const (
	DefaultKeepAlive       = 30 * time.Second
	DefaultDeadPeerTimeout = 60 * time.Second

	// DefaultReadBufferSize is the buffer a Conn reads frames through,
	// held for the Conn's life. Reads with a buffer at least this large
	// bypass it once it is empty; keeping it no larger than the small
	// buffer tunnel.Join reads into first lets Join's reads come straight
	// from the transport instead of in pieces of this buffer.
	DefaultReadBufferSize = 2 << 10

	// DefaultWriteBufferSize is the buffer a Write frames a message in. It
	// comes from a shared pool for the duration of one Write, so idle
	// conns hold none, and it matches the largest write tunnel.Join makes:
	// a message that fits goes out in one transport write without
	// allocating, where a 4 KiB buffer costs a second write (a second TLS
	// record) and two allocations per message.
	DefaultWriteBufferSize = 32 << 10
)

// Close codes (RFC 6455, section 7.4.1; 4000-4999 are for private use,
// section 7.4.2). These are the ones this module sends; the proxy's
// package doc says when.
const (
	CloseNormal        = 1000 // normal closure: the session ended
	CloseGoingAway     = 1001 // going away: the server is shutting down
	CloseProtocolError = 1002 // protocol error (sent by the websocket library)
	CloseInternalError = 1011 // an unexpected condition: the console failed

	// ClosePeerTimeout: nothing arrived from the peer, or nothing could
	// be written to it, for the dead-peer or write timeout.
	ClosePeerTimeout = 4000
	// CloseHandshakeFailed: the console protocol's handshake with the
	// viewer failed after the upgrade (e.g. an RFB security type refused).
	CloseHandshakeFailed = 4001
	// CloseEndedByAdmin: an administrator ended the session (the proxy's
	// sessions API).
	CloseEndedByAdmin = 4002
	// CloseViewerTooSlow: a viewer of a shared console left its output
	// unread for too long, and was dropped so as not to hold the others.
	CloseViewerTooSlow = 4003
)

// MaxCloseReason is the longest close reason, in bytes: a control frame
// carries at most 125 bytes, two of them the code (RFC 6455, 5.5).
const MaxCloseReason = 123

// closeWait bounds the write of the close frame by Close.
const closeWait = time.Second

// ErrPeerTimeout is wrapped by the error Read returns when the peer stopped
// answering: nothing arrived within the dead-peer timeout.
var ErrPeerTimeout = errors.New("websocket: peer stopped answering")

// errCloseSent is returned by writes after CloseWrite.
var errCloseSent = fmt.Errorf("websocket: close frame already sent: %w", net.ErrClosed)

// errNoCloseFrame is returned by Read when the transport ended without a
// close frame.
var errNoCloseFrame = fmt.Errorf("websocket: connection closed without a close frame: %w", io.ErrUnexpectedEOF)

// CloseError is the error Read returns when the peer closed the websocket
// with a code other than 1000 (normal closure), 1001 (going away) or none.
type CloseError struct {
	Code   int    // close code, e.g. 1011
	Reason string // the peer's close reason, possibly empty
}

func (e *CloseError) Error() string {
	s := fmt.Sprintf("websocket: peer closed the connection with code %d", e.Code)
	if t := closeCodeText(e.Code); t != "" {
		s += " (" + t + ")"
	}
	if e.Reason != "" {
		s += ": " + sanitize(e.Reason, maxReason)
	}
	return s
}

func closeCodeText(code int) string {
	switch code {
	case CloseGoingAway:
		return "going away"
	case ClosePeerTimeout:
		return "peer timeout"
	case CloseHandshakeFailed:
		return "handshake failed"
	case websocket.CloseProtocolError:
		return "protocol error"
	case websocket.CloseUnsupportedData:
		return "unsupported data"
	case websocket.CloseInvalidFramePayloadData:
		return "invalid payload"
	case websocket.ClosePolicyViolation:
		return "policy violation"
	case websocket.CloseMessageTooBig:
		return "message too big"
	case websocket.CloseMandatoryExtension:
		return "missing extension"
	case websocket.CloseInternalServerErr:
		return "internal error"
	case websocket.CloseServiceRestart:
		return "service restart"
	case websocket.CloseTryAgainLater:
		return "try again later"
	case websocket.CloseTLSHandshake:
		return "TLS handshake failed"
	}
	return ""
}

// Conn is a websocket as a net.Conn. It is safe for one Read and one Write
// (or CloseWrite) at a time from different goroutines, with Close and the
// deadline setters callable at any time; concurrent Reads, and concurrent
// Writes, are serialised.
//
// Deadlines work as net.Conn's do, including on a Read or Write in
// progress, with one difference (gorilla/websocket's, and tls.Conn's for
// writes): once a Read or a Write has timed out, the websocket's framing
// state is unknown, so every later Read, or Write, returns the same error.
// Use deadlines to bound an exchange, not to poll.
type Conn struct {
	ws        *websocket.Conn
	nc        net.Conn // under ws: TCP or TLS
	keepAlive time.Duration
	deadPeer  time.Duration
	writeTO   time.Duration // bound of each frame write; <= 0: none
	ping      *time.Timer   // nil without keepalive

	peerClose atomic.Pointer[CloseError] // the close frame the peer sent

	rmu  sync.Mutex // serialises Read; guards r and rerr
	r    io.Reader  // current message, nil between messages
	rerr error      // sticky read error

	// wmu serialises every frame this package writes but Close's: data,
	// close, ping and pong (gorilla allows one writer). Control frames are
	// written under it with the user's write deadline, like data: a ping
	// or pong stuck behind a slow peer must not time out on its own, as a
	// timed-out write leaves the websocket unusable.
	wmu     sync.Mutex
	pongDue atomic.Pointer[string] // payload of a ping not answered yet
	ponging atomic.Bool            // a sendPong goroutine is running

	dmu    sync.Mutex // guards the deadlines
	rdl    time.Time  // read deadline set by the user
	wdl    time.Time  // write deadline set by the user
	peerDL time.Time  // when the peer counts as dead if nothing arrives

	closeOnce sync.Once
	closed    atomic.Bool
}

// newConn wraps ws. keepAlive and deadPeer: 0 means the default, < 0 off;
// writeTO: 0 means deadPeer, < 0 off.
func newConn(ws *websocket.Conn, keepAlive, deadPeer, writeTO time.Duration) *Conn {
	if keepAlive == 0 {
		keepAlive = DefaultKeepAlive
	}
	if deadPeer == 0 {
		deadPeer = DefaultDeadPeerTimeout
	}
	if writeTO == 0 {
		writeTO = deadPeer
	}
	c := &Conn{ws: ws, nc: ws.NetConn(), keepAlive: keepAlive, deadPeer: deadPeer, writeTO: writeTO}

	// A close frame is answered by CloseWrite or Close, not at once: that
	// is what lets the receiving side keep writing (half-close).
	ws.SetCloseHandler(func(int, string) error { return nil })
	ws.SetPingHandler(func(data string) error {
		c.heard()
		// The pong goes out from another goroutine, at most one at a
		// time, or from a Write finishing first (unlockWrite): Read never
		// waits for the write side, which may be stuck on a peer that
		// does not read.
		c.pongDue.Store(&data)
		if c.ponging.CompareAndSwap(false, true) {
			go c.sendPong()
		}
		return nil
	})
	ws.SetPongHandler(func(string) error {
		c.heard()
		return nil
	})
	if keepAlive > 0 {
		c.ping = time.AfterFunc(time.Hour, c.sendPing)
		c.ping.Reset(keepAlive)
	}
	return c
}

// Subprotocol returns the subprotocol the handshake settled on, or "".
func (c *Conn) Subprotocol() string { return c.ws.Subprotocol() }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the peer's network address: for a server-side Conn,
// the HTTP client's.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Read reads message data, across message boundaries.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.rerr != nil {
		return 0, c.rerr
	}
	c.heard() // the peer gets the full dead-peer timeout from now
	for {
		if c.r == nil {
			_, r, err := c.ws.NextReader()
			if err != nil {
				c.rerr = c.readError(err)
				return 0, c.rerr
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil // end of message
			if n == 0 {
				continue // empty message
			}
			err = nil
		}
		if err != nil {
			c.rerr = c.readError(err)
			if n == 0 {
				return 0, c.rerr
			}
			return n, nil // the error comes with the next Read
		}
		return n, nil
	}
}

// heard records that the peer is alive (data or a control frame arrived,
// or a Read starts) and moves the dead-peer read deadline.
func (c *Conn) heard() {
	if c.deadPeer <= 0 {
		return
	}
	c.dmu.Lock()
	c.peerDL = time.Now().Add(c.deadPeer)
	c.applyReadDeadlineLocked()
	c.dmu.Unlock()
}

// applyReadDeadlineLocked sets the transport's read deadline to the
// earlier of the user's and the dead-peer one.
func (c *Conn) applyReadDeadlineLocked() {
	d := c.rdl
	if !c.peerDL.IsZero() && (d.IsZero() || c.peerDL.Before(d)) {
		d = c.peerDL
	}
	c.nc.SetReadDeadline(d)
}

// readError maps an error from gorilla's read side to this package's.
func (c *Conn) readError(err error) error {
	if c.closed.Load() {
		return c.opError("read", net.ErrClosed)
	}
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		if ce.Code != websocket.CloseAbnormalClosure {
			c.peerClose.Store(&CloseError{Code: ce.Code, Reason: ce.Text})
		}
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived:
			return io.EOF
		case websocket.CloseAbnormalClosure:
			return errNoCloseFrame
		}
		return &CloseError{Code: ce.Code, Reason: ce.Text}
	}
	if errors.Is(err, websocket.ErrReadLimit) {
		// No read limit is set: gorilla reports a 64-bit frame length with
		// the most significant bit set (RFC 6455 5.2) this way, and sends
		// no close frame. Fail the websocket as for other protocol errors.
		c.close(closeFrame(CloseProtocolError, "invalid frame length"))
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		now := time.Now()
		c.dmu.Lock()
		rdl, peerDL := c.rdl, c.peerDL
		c.dmu.Unlock()
		if (rdl.IsZero() || now.Before(rdl)) && !peerDL.IsZero() && !now.Before(peerDL) {
			c.close(closeFrame(ClosePeerTimeout, fmt.Sprintf("nothing received for %v", c.deadPeer)))
			return fmt.Errorf("%w (nothing received for %v)", ErrPeerTimeout, c.deadPeer)
		}
		return c.opError("read", os.ErrDeadlineExceeded)
	}
	return err
}

// Write sends p as one binary message.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.unlockWrite()
	c.ws.SetWriteDeadline(c.writeDeadline()) // gorilla applies it to each frame it writes
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, c.writeError(err)
	}
	return len(p), nil
}

// sendPong answers the latest ping.
func (c *Conn) sendPong() {
	c.wmu.Lock()
	c.ponging.Store(false) // a ping from now on starts a new sendPong
	c.unlockWrite()
}

// unlockWrite releases wmu, first sending a pong that came due while it
// was held. Checking after the release too closes the race with a ping
// handler whose TryLock failed just before.
func (c *Conn) unlockWrite() {
	for {
		if data := c.pongDue.Swap(nil); data != nil {
			// Errors: after CloseWrite there is nothing to answer; a broken
			// transport shows up in Read and Write.
			c.ws.WriteControl(websocket.PongMessage, []byte(*data), c.writeDeadline())
		}
		c.wmu.Unlock()
		if c.pongDue.Load() == nil || !c.wmu.TryLock() {
			return
		}
	}
}

// writeDeadline is the deadline of a frame write starting now: the
// user's, or the write timeout's if sooner.
func (c *Conn) writeDeadline() time.Time {
	c.dmu.Lock()
	d := c.wdl
	c.dmu.Unlock()
	if c.writeTO > 0 {
		if t := time.Now().Add(c.writeTO); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

func (c *Conn) writeError(err error) error {
	if c.closed.Load() {
		return c.opError("write", net.ErrClosed)
	}
	if err == websocket.ErrCloseSent {
		return errCloseSent
	}
	// gorilla hides the transport's timeout error behind its own type.
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return c.opError("write", os.ErrDeadlineExceeded)
	}
	return err
}

// CloseWrite sends a normal close frame: the peer reads io.EOF. Reads go
// on until the peer's close frame. Like Write, it is bounded by the write
// deadline only. Calling it again does nothing.
func (c *Conn) CloseWrite() error {
	c.wmu.Lock()
	defer c.unlockWrite()
	// A ping read before the peer's close frame is answered before ours
	// (RFC 6455 5.5.2): after it, gorilla sends no pong.
	if data := c.pongDue.Swap(nil); data != nil {
		c.ws.WriteControl(websocket.PongMessage, []byte(*data), c.writeDeadline())
	}
	err := c.ws.WriteControl(websocket.CloseMessage, closeNormal, c.writeDeadline())
	if err == websocket.ErrCloseSent {
		return nil
	}
	if err != nil {
		return c.writeError(err)
	}
	return nil
}

var closeNormal = websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")

// Close sends a normal close frame (1000), unless one was sent already
// (waiting at most a second for it to go out), and closes the transport.
// Pending Reads and Writes return errors wrapping net.ErrClosed.
func (c *Conn) Close() error { return c.close(closeNormal) }

// CloseWithReason is Close with a close code of the caller's (see the
// Close constants) and a reason, which is folded onto one line and cut to
// MaxCloseReason bytes. Like Close it sends nothing if a close frame was
// sent already, and calling it or Close again does nothing: the first
// call decides the code.
func (c *Conn) CloseWithReason(code int, reason string) error {
	return c.close(closeFrame(code, reason))
}

func closeFrame(code int, reason string) []byte {
	return websocket.FormatCloseMessage(code, sanitizeReason(reason))
}

// sanitizeReason makes reason a valid close reason: one line of UTF-8,
// at most MaxCloseReason bytes, cut at a character boundary.
func sanitizeReason(reason string) string {
	s := sanitize(reason, 1<<10)
	if len(s) <= MaxCloseReason {
		return s
	}
	s = s[:MaxCloseReason]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// PeerClose returns the close frame the peer sent, or nil if none has
// been read. Read reports codes 1000 and 1001 as io.EOF; this tells them
// apart and gives their reason.
func (c *Conn) PeerClose() *CloseError { return c.peerClose.Load() }

// close closes the transport once, first sending frame (nil: none).
func (c *Conn) close(frame []byte) error {
	err := c.opError("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.ping != nil {
			c.ping.Stop()
		}
		if frame != nil {
			dl := time.Now().Add(closeWait)
			// Bound a Write stuck on a peer that does not read, which holds
			// the transport's write lock the close frame needs.
			c.nc.SetWriteDeadline(dl)
			c.ws.WriteControl(websocket.CloseMessage, frame, dl)
		}
		err = c.nc.Close()
	})
	return err
}

// sendPing runs on the keepalive timer. It waits for a Write in progress
// and goes out between two messages.
func (c *Conn) sendPing() {
	if c.closed.Load() {
		return
	}
	c.wmu.Lock()
	err := c.ws.WriteControl(websocket.PingMessage, nil, c.writeDeadline())
	c.unlockWrite()
	if err != nil || c.closed.Load() {
		return // close frame sent, or the transport is broken: stop
	}
	c.ping.Reset(c.keepAlive)
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read. A Read that times out leaves
// the read side failed (see Conn).
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.rdl = t
	c.applyReadDeadlineLocked()
	return nil
}

// SetWriteDeadline sets the deadline for Write and CloseWrite, including a
// Write in progress. A Write that times out leaves the write side failed
// (see Conn).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.dmu.Lock()
	c.wdl = t
	c.dmu.Unlock()
	return c.nc.SetWriteDeadline(c.writeDeadline()) // reaches a Write in progress
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "websocket", Source: c.nc.LocalAddr(), Addr: c.nc.RemoteAddr(), Err: err}
}
