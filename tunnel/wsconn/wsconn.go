// Package wsconn makes a websocket (RFC 6455) a net.Conn, with a frame
// codec of its own built for a byte stream: frames are decoded in place
// in the caller's buffer (one transport read can return the data of many
// frames, or of one frame and the next one's header, with no buffer of
// the Conn's in between), and a frame goes out in one transport write
// (writev of header and payload on TCP). The conformance tests compare it
// with gorilla/websocket, which only tests use.
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
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Defaults for zero option values.
const (
	DefaultKeepAlive       = 30 * time.Second
	DefaultDeadPeerTimeout = 60 * time.Second

	// directRead is the smallest Read buffer frames are decoded in
	// directly. A smaller Read (a protocol handshake reading a few bytes)
	// goes through a pooled buffer of readBufSize, held only while it
	// holds decoded data.
	directRead  = 256
	readBufSize = 2 << 10

	// writeBufSize is the buffer a Write frames a message in when the
	// transport cannot take header and payload in one writev (TLS), or
	// masks it (the client side). It comes from a shared pool for one
	// Write and fits the largest write tunnel.Join makes with its
	// header, so that such a message is one transport write (one TLS
	// record sequence) without allocating.
	writeBufSize = 32<<10 + maxHeader
)

// Close codes (RFC 6455, section 7.4.1; 4000-4999 are for private use,
// section 7.4.2). These are the ones this module sends; the proxy's
// package doc says when.
const (
	CloseNormal        = 1000 // normal closure: the session ended
	CloseGoingAway     = 1001 // going away: the server is shutting down
	CloseProtocolError = 1002 // protocol error: the peer broke RFC 6455
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
	case CloseProtocolError:
		return "protocol error"
	case closeUnsupported:
		return "unsupported data"
	case closeInvalidPayload:
		return "invalid payload"
	case closePolicy:
		return "policy violation"
	case closeTooBig:
		return "message too big"
	case closeExtension:
		return "missing extension"
	case CloseInternalError:
		return "internal error"
	case closeServiceRestart:
		return "service restart"
	case closeTryAgainLater:
		return "try again later"
	case closeTLSHandshake:
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
// progress, with one difference (tls.Conn's for writes): once a Read or a
// Write has timed out, the websocket's framing state is unknown, so every
// later Read, or Write, returns the same error. Use deadlines to bound an
// exchange, not to poll.
type Conn struct {
	nc          net.Conn // TCP or TLS
	server      bool     // the server's end: frames read are masked, frames written are not
	sock        net.Conn // the TCP or Unix socket under nc's wrappers, or nil (TLS)
	writev      bool     // sock writes net.Buffers in one system call
	subprotocol string
	keepAlive   time.Duration
	deadPeer    time.Duration
	writeTO     time.Duration // bound of each frame write; <= 0: none
	ping        *time.Timer   // nil without keepalive

	peerClose atomic.Pointer[CloseError] // the close frame the peer sent

	rmu     sync.Mutex // serialises Read; guards what follows
	rerr    error      // sticky read error
	failing error      // a protocol violation found behind data not read yet
	prefix  []byte     // input that arrived with the handshake's response
	dec     decoder
	lazy    lazyRead           // ReadLazy's state
	rbuf    *[readBufSize]byte // decoded data for small Reads, rbuf[roff:rend]
	roff    int
	rend    int

	// wmu serialises every frame this package writes: data, close, ping
	// and pong. Control frames are written under it with the user's
	// write deadline, like data: a ping or pong stuck behind a slow peer
	// must not time out on its own, as a timed-out write leaves the
	// websocket unusable.
	wmu       sync.Mutex
	werr      error // sticky write error
	closeSent bool
	hdr       [maxHeader]byte
	vec       [2][]byte   // header and payload, for writev
	bufs      net.Buffers // vec[:], consumed by WriteTo

	pongDue atomic.Pointer[string] // payload of a ping not answered yet
	ponging atomic.Bool            // a sendPong goroutine is running

	dmu    sync.Mutex // guards the deadlines
	rdl    time.Time  // read deadline set by the user
	wdl    time.Time  // write deadline set by the user
	peerDL time.Time  // when the peer counts as dead if nothing arrives

	closeOnce sync.Once
	closed    atomic.Bool
}

// readPool and writePool hold the buffers Conns borrow: pointers, so that
// Get and Put do not allocate.
var (
	readPool  = sync.Pool{New: func() any { return new([readBufSize]byte) }}
	writePool = sync.Pool{New: func() any { return new([writeBufSize]byte) }}
)

// newConn makes a Conn of nc after a completed handshake. keepAlive and
// deadPeer: 0 means the default, < 0 off; writeTO: 0 means deadPeer, < 0
// off.
func newConn(nc net.Conn, server bool, subprotocol string, keepAlive, deadPeer, writeTO time.Duration) *Conn {
	if keepAlive == 0 {
		keepAlive = DefaultKeepAlive
	}
	if deadPeer == 0 {
		deadPeer = DefaultDeadPeerTimeout
	}
	if writeTO == 0 {
		writeTO = deadPeer
	}
	c := &Conn{nc: nc, server: server, subprotocol: subprotocol, keepAlive: keepAlive, deadPeer: deadPeer, writeTO: writeTO}
	c.dec.server = server
	if sock := socketOf(nc); sock != nil {
		c.sock, c.writev = sock, true
		c.lazyReader(sock)
	}
	if keepAlive > 0 {
		c.ping = time.AfterFunc(time.Hour, c.sendPing)
		c.ping.Reset(keepAlive)
	}
	return c
}

// socketOf returns the TCP or Unix socket under nc and the wrappers that
// count or watch a socket without changing its bytes (such as the
// connection limiter's: they have an Unwrap method), or nil: a *tls.Conn,
// whose bytes are not the socket's, has none. Frames are read from and
// written to that socket directly (ReadLazy, writev); deadlines and Close
// still go through nc.
func socketOf(nc net.Conn) net.Conn {
	for {
		switch c := nc.(type) {
		case *net.TCPConn, *net.UnixConn:
			return c
		case interface{ Unwrap() net.Conn }:
			nc = c.Unwrap()
		default:
			return nil
		}
	}
}

// Subprotocol returns the subprotocol the handshake settled on, or "".
func (c *Conn) Subprotocol() string { return c.subprotocol }

// LocalAddr returns the local network address.
func (c *Conn) LocalAddr() net.Addr { return c.nc.LocalAddr() }

// RemoteAddr returns the peer's network address: for a server-side Conn,
// the HTTP client's.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Read reads message data, across message boundaries. A buffer of at
// least 256 bytes receives the transport's bytes directly and the frames
// are decoded in it.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return c.readLocked(p)
}

// readLocked is Read with rmu held.
func (c *Conn) readLocked(p []byte) (int, error) {
	if c.rend > c.roff {
		n := copy(p, c.rbuf[c.roff:c.rend])
		c.roff += n
		c.releaseReadBuf()
		return n, nil
	}
	if c.rerr != nil {
		if c.failing != nil {
			// The data before the violation was read: now fail.
			c.failProtocol(c.failing)
			c.failing = nil
		}
		return 0, c.rerr
	}
	c.heard() // the peer gets the full dead-peer timeout from now
	if len(p) >= directRead {
		return c.readFrames(p)
	}
	if c.rbuf == nil {
		c.rbuf = readPool.Get().(*[readBufSize]byte)
	}
	m, err := c.readFrames(c.rbuf[:])
	n := copy(p, c.rbuf[:m])
	c.roff, c.rend = n, m
	c.releaseReadBuf()
	return n, err
}

// releaseReadBuf gives the small-read buffer back once it is drained.
func (c *Conn) releaseReadBuf() {
	if c.rbuf != nil && c.roff >= c.rend {
		readPool.Put(c.rbuf)
		c.rbuf = nil
		c.roff, c.rend = 0, 0
	}
}

// readFrames reads from the transport into b (at least maxPend long),
// behind the undecoded input kept from the last read, and decodes the
// frames there until some data is at the front of b. An error is kept
// in c.rerr and returned by the first call with no data to return.
func (c *Conn) readFrames(b []byte) (int, error) {
	for {
		k := copy(b, c.dec.pend[:c.dec.npend])
		c.dec.npend = 0
		m, err := c.readRaw(b[k:])
		n, again := c.decodeInput(b[:k+m], err)
		if again {
			continue // headers and control frames only
		}
		if n > 0 {
			return n, nil // the error comes with the next Read
		}
		return 0, c.rerr
	}
}

// decodeInput decodes input b in place (pending input and what a read
// returned; the read ended with rerr, or nil): it returns the data at the
// front of b, or again when only headers and control frames came. An
// error is kept in c.rerr, for the first call with no data to return.
func (c *Conn) decodeInput(b []byte, rerr error) (n int, again bool) {
	n, stop, perr := c.dec.decode(b, c.control)
	switch {
	case perr != nil && n > 0:
		c.rerr, c.failing = perr, perr
	case perr != nil:
		c.failProtocol(perr)
	case stop: // a close frame: c.rerr is set
	case rerr != nil:
		c.rerr = c.readError(rerr)
	case n == 0:
		return 0, true
	}
	return n, false
}

// readRaw reads the transport, first the input that came with the
// handshake's response.
func (c *Conn) readRaw(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.nc.Read(b)
}

// control handles a control frame from the peer (RFC 6455, section 5.5).
func (c *Conn) control(op opcode, p []byte) (stop bool, err error) {
	switch op {
	case opPing:
		c.heard()
		// The pong goes out from another goroutine, at most one at a
		// time, or from a Write finishing first (unlockWrite): Read never
		// waits for the write side, which may be stuck on a peer that
		// does not read.
		data := string(p)
		c.pongDue.Store(&data)
		if c.ponging.CompareAndSwap(false, true) {
			go c.sendPong()
		}
	case opPong:
		c.heard()
	case opClose:
		ce, err := parseClose(p)
		if err != nil {
			return false, err
		}
		c.peerClose.Store(ce)
		switch ce.Code {
		case CloseNormal, CloseGoingAway, closeNoStatus:
			c.rerr = io.EOF
		default:
			c.rerr = &CloseError{Code: ce.Code, Reason: ce.Reason}
		}
		// A close frame is answered by CloseWrite or Close, not here:
		// that is what lets this side keep writing (half-close).
		return true, nil
	}
	return false, nil
}

// failProtocol fails the Conn for the peer's violation of the protocol:
// it sends the close code that says so and closes the transport (RFC
// 6455, section 7.1.7).
func (c *Conn) failProtocol(err error) {
	var pe *protocolError
	if !errors.As(err, &pe) {
		pe = &protocolError{code: CloseProtocolError, msg: err.Error()}
	}
	c.rerr = pe
	c.close(closeFrame(pe.code, pe.msg))
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

// readError maps an error from the transport to this package's.
func (c *Conn) readError(err error) error {
	if c.closed.Load() {
		return c.opError("read", net.ErrClosed)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errNoCloseFrame
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
	if err := c.writeFrame(opBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeFrame writes one unfragmented frame, with wmu held, bounded by
// the write deadline. A failed write leaves the write side failed: its
// framing is unknown.
func (c *Conn) writeFrame(op opcode, p []byte) error {
	closing := c.closed.Load()
	switch {
	case c.werr != nil:
		return c.werr
	case c.closeSent:
		return errCloseSent
	case closing && op != opClose:
		return c.opError("write", net.ErrClosed)
	}
	if !closing { // close set its own bound
		c.nc.SetWriteDeadline(c.writeDeadline())
	}
	var err error
	switch {
	case !c.server:
		err = c.writeMasked(op, p)
	case c.writev:
		h := frameHeader(c.hdr[:], op, len(p), nil)
		c.vec = [2][]byte{c.hdr[:h], p}
		c.bufs = c.vec[:]
		_, err = c.bufs.WriteTo(c.sock)
		c.vec[1] = nil // the caller's buffer is its own again
	default:
		buf := writePool.Get().(*[writeBufSize]byte)
		h := frameHeader(buf[:], op, len(p), nil)
		n := copy(buf[h:], p)
		if _, err = c.nc.Write(buf[:h+n]); err == nil && n < len(p) {
			_, err = c.nc.Write(p[n:])
		}
		writePool.Put(buf)
	}
	if err != nil {
		c.werr = c.writeError(err)
		return c.werr
	}
	if op == opClose {
		c.closeSent = true
	}
	return nil
}

// writeMasked writes a client's frame: the payload masked with a fresh
// key (RFC 6455, section 5.3) in a pooled buffer, in as few transport
// writes as the buffer allows.
func (c *Conn) writeMasked(op opcode, p []byte) error {
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32()) // ChaCha8, seeded by the system
	buf := writePool.Get().(*[writeBufSize]byte)
	defer writePool.Put(buf)
	h := frameHeader(buf[:], op, len(p), &key)
	pos := 0
	for {
		n := min(len(buf)-h, len(p))
		pos = maskCopy(buf[h:], p[:n], key, pos)
		if _, err := c.nc.Write(buf[:h+n]); err != nil {
			return err
		}
		p = p[n:]
		if len(p) == 0 {
			return nil
		}
		h = 0
	}
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
		if data := c.pongDue.Swap(nil); data != nil && !c.closed.Load() {
			// Errors: after CloseWrite there is nothing to answer; a broken
			// transport shows up in Read and Write.
			c.writeFrame(opPong, []byte(*data))
		}
		c.wmu.Unlock()
		if c.pongDue.Load() == nil || !c.wmu.TryLock() {
			return
		}
	}
}

// pongFirst answers, with wmu held, a ping read before this side's close
// frame goes out: after it, nothing more may be sent (RFC 6455, 5.5.2
// and 5.5.1).
func (c *Conn) pongFirst() {
	if data := c.pongDue.Swap(nil); data != nil {
		c.writeFrame(opPong, []byte(*data))
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
	if c.closeSent {
		return nil
	}
	c.pongFirst()
	return c.writeFrame(opClose, closeNormal)
}

var closeNormal = closePayload(CloseNormal, "")

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
	return closePayload(code, sanitizeReason(reason))
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

// close closes the transport once, first sending a close frame of
// payload (nil: none) unless one was sent.
func (c *Conn) close(payload []byte) error {
	err := c.opError("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		if c.ping != nil {
			c.ping.Stop()
		}
		if payload != nil && c.lockWriteBy(time.Now().Add(closeWait)) {
			if !c.closeSent && c.werr == nil {
				c.pongFirst()
				c.writeFrame(opClose, payload)
			}
			c.wmu.Unlock()
		}
		err = c.nc.Close()
	})
	return err
}

// lockWriteBy takes wmu for close, waiting at most until deadline, which
// it also sets on the transport: a Write stuck on a peer that does not
// read holds wmu, and fails by then (a Write that began just before close
// may have moved the deadline since; the polling bounds that too). It
// reports whether it took wmu, with the deadline set for the close frame.
func (c *Conn) lockWriteBy(deadline time.Time) bool {
	c.nc.SetWriteDeadline(deadline)
	for !c.wmu.TryLock() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	c.nc.SetWriteDeadline(deadline)
	return true
}

// sendPing runs on the keepalive timer. It waits for a Write in progress
// and goes out between two messages.
func (c *Conn) sendPing() {
	if c.closed.Load() {
		return
	}
	c.wmu.Lock()
	err := c.writeFrame(opPing, nil)
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
