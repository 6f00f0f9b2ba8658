package libvirtresolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"

	"github.com/virtconsole/virtconsole/protocols"
)

// The console stream is driven on a libvirt connection of its own, with
// go-libvirt's exported socket package doing the framing and this file
// doing the few remote-protocol calls it needs: go-libvirt's generated
// DomainOpenConsole can only copy the stream into an io.Writer, with no
// way to send keystrokes back.

// Remote protocol numbers (libvirt's remote_protocol.x; go-libvirt keeps
// its copies in an internal package).
const (
	remoteProgram         = 0x20008086
	procConnectOpen       = 1
	procConnectClose      = 2
	procAuthList          = 66
	procAuthPolkit        = 70
	procDomainOpenConsole = 201

	authNone   = 0
	authSASL   = 1
	authPolkit = 2

	// streamChunk bounds the payload of one stream packet (libvirt takes
	// up to 256 KiB).
	streamChunk = 64 << 10
)

var (
	// ErrConsoleBusy means another client holds the console stream; open
	// it with force to take it over.
	ErrConsoleBusy = errors.New("console in use by another client")
	// ErrNoConsoleDevice means the domain has no console device of that
	// name (or none at all).
	ErrNoConsoleDevice = errors.New("no such console device")
)

// streamAddr is the net.Addr of a console stream, and the Address of its
// target: a description for logs, which nothing parses.
type streamAddr struct{ uri, domain, device string }

func (streamAddr) Network() string { return "libvirt-console" }

func (a streamAddr) String() string {
	device := a.device
	if device == "" {
		device = "default console"
	}
	return "libvirt " + a.uri + " domain " + a.domain + " " + device
}

// streamTarget is the target of a pty console of a running domain: its
// Dial opens the console stream on a libvirt connection of its own (with
// force, taking it over from another client).
func streamTarget(kind protocols.Kind, lt *target, dom libvirt.Domain, device string, force bool) protocols.Target {
	return protocols.Target{
		Kind:    kind,
		Address: streamAddr{lt.raw, dom.Name, device}.String(),
		Dial: func(ctx context.Context) (net.Conn, error) {
			return openConsole(ctx, lt, dom, device, force)
		},
	}
}

// openConsole dials lt, opens the console stream of dom's device (the
// first console when device is empty) and returns it as a net.Conn.
func openConsole(ctx context.Context, lt *target, dom libvirt.Domain, device string, force bool) (net.Conn, error) {
	c := &consoleConn{
		lt:      lt,
		addr:    streamAddr{lt.raw, dom.Name, device},
		replies: make(map[int32]chan rpcReply),
		data:    make(chan streamMsg, 64),
		closed:  make(chan struct{}),
		rdl:     makeDeadline(),
	}
	d := &capturingDialer{d: lt.dialer}
	c.sock = socket.New(d, c)
	c.raw = d
	if err := c.sock.Connect(); err != nil {
		return nil, &connectError{uri: lt.raw, transport: lt.transport, err: err}
	}
	stop := context.AfterFunc(ctx, func() { c.sock.Disconnect() })
	err := c.open(dom, device, force)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
		c.Close()
		return nil, fmt.Errorf("open the console of domain %s: %w", dom.Name, err)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *consoleConn) open(dom libvirt.Domain, device string, force bool) error {
	// libvirtd wants AUTH_LIST before anything else, even without auth.
	rep, err := c.call(procAuthList, nil)
	if err != nil {
		return &connectError{uri: c.lt.raw, transport: c.lt.transport, err: err}
	}
	auths, err := decodeInts(rep)
	if err != nil {
		return &connectError{uri: c.lt.raw, transport: c.lt.transport, err: err}
	}
	hasNone := len(auths) == 0
	for _, a := range auths {
		hasNone = hasNone || a == authNone
	}
	if !hasNone {
		switch {
		case contains(auths, authPolkit):
			if _, err := c.call(procAuthPolkit, nil); err != nil {
				return &connectError{uri: c.lt.raw, transport: c.lt.transport, err: fmt.Errorf("polkit authentication: %w", err)}
			}
		case contains(auths, authSASL):
			return &connectError{uri: c.lt.raw, transport: c.lt.transport, err: errors.New("libvirtd requires SASL authentication, which is not supported")}
		default:
			return &connectError{uri: c.lt.raw, transport: c.lt.transport, err: fmt.Errorf("libvirtd requires an unsupported authentication type %v", auths)}
		}
	}
	var e xdrEncoder
	e.optString(string(libvirt.RemoteURI(c.lt.u)))
	e.uint32(0)
	if _, err := c.call(procConnectOpen, e.b); err != nil {
		return &connectError{uri: c.lt.raw, transport: c.lt.transport, err: err}
	}

	e = xdrEncoder{}
	e.string(dom.Name)
	e.fixed(dom.UUID[:])
	e.int32(dom.ID)
	if device == "" {
		e.uint32(0)
	} else {
		e.optString(device)
	}
	var flags uint32
	if force {
		flags = uint32(libvirt.DomainConsoleForce)
	}
	e.uint32(flags)

	c.mu.Lock()
	c.serial++
	c.streamSerial = c.serial
	c.mu.Unlock()
	if _, err := c.callSerial(c.streamSerial, procDomainOpenConsole, e.b); err != nil {
		var le libvirt.Error
		name := device
		if name == "" {
			name = "default console"
		}
		switch {
		case errors.As(err, &le) && strings.Contains(le.Message, "Active console session exists"):
			return fmt.Errorf("%w: %s of domain %s is open elsewhere (virsh console?); use force to take it over", ErrConsoleBusy, name, dom.Name)
		case errors.As(err, &le) && (strings.Contains(le.Message, "cannot find character device") || strings.Contains(le.Message, "cannot find console") || strings.Contains(le.Message, "no console devices")):
			return fmt.Errorf("%w: domain %s: %s", ErrNoConsoleDevice, dom.Name, oneLine(le.Message))
		case errors.As(err, &le) && le.Code == uint32(libvirt.ErrNoDomain):
			return fmt.Errorf("%w: %s on %s", ErrDomainNotFound, dom.Name, c.lt.raw)
		case errors.As(err, &le) && le.Code == uint32(libvirt.ErrOperationInvalid):
			return fmt.Errorf("open %s of domain %s: %s", name, dom.Name, oneLine(le.Message))
		}
		return fmt.Errorf("open %s of domain %s: %w", name, dom.Name, err)
	}
	return nil
}

func contains(s []int32, v int32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

type rpcReply struct {
	status  uint32
	payload []byte
}

type streamMsg struct {
	data []byte
	err  error // io.EOF at the end of the stream
}

// consoleConn is a libvirt console stream as a net.Conn, and the
// socket.Router of the connection it runs on.
type consoleConn struct {
	lt   *target
	addr streamAddr
	sock *socket.Socket
	raw  *capturingDialer

	mu           sync.Mutex
	serial       int32
	streamSerial int32
	replies      map[int32]chan rpcReply

	data     chan streamMsg
	rmu      sync.Mutex // serialises Read
	pending  []byte
	readErr  error // sticky, once the stream ended
	rdl      deadline
	wmu      sync.Mutex // serialises Write
	closed   chan struct{}
	closeOne sync.Once
}

// Route implements socket.Router. It runs on the socket's reader
// goroutine; blocking here (a slow reader) pushes back on libvirtd.
func (c *consoleConn) Route(h *socket.Header, buf []byte) {
	c.mu.Lock()
	stream := c.streamSerial
	c.mu.Unlock()
	if h.Type == socket.Stream && h.Serial == stream && stream != 0 {
		var m streamMsg
		switch h.Status {
		case socket.StatusContinue:
			if len(buf) == 0 {
				return
			}
			m.data = buf
		case socket.StatusOK:
			m.err = io.EOF
		default:
			m.err = fmt.Errorf("console stream ended by libvirtd (taken over by another client, or the domain stopped): %w", decodeError(buf))
		}
		select {
		case c.data <- m:
		case <-c.closed:
		}
		return
	}
	if h.Type != socket.Reply {
		return // events and keepalives: none were asked for
	}
	c.mu.Lock()
	ch := c.replies[h.Serial]
	delete(c.replies, h.Serial)
	c.mu.Unlock()
	if ch != nil {
		ch <- rpcReply{status: h.Status, payload: buf}
	}
}

func (c *consoleConn) call(proc uint32, payload []byte) ([]byte, error) {
	c.mu.Lock()
	c.serial++
	serial := c.serial
	c.mu.Unlock()
	return c.callSerial(serial, proc, payload)
}

func (c *consoleConn) callSerial(serial int32, proc uint32, payload []byte) ([]byte, error) {
	ch := make(chan rpcReply, 1)
	c.mu.Lock()
	c.replies[serial] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.replies, serial)
		c.mu.Unlock()
	}()
	if err := c.sock.SendPacket(serial, proc, remoteProgram, payload, socket.Call, socket.StatusOK); err != nil {
		return nil, c.lostErr(err)
	}
	select {
	case r := <-ch:
		if r.status == socket.StatusError {
			return nil, decodeError(r.payload)
		}
		return r.payload, nil
	case <-c.sock.Disconnected():
		return nil, c.lostErr(io.ErrUnexpectedEOF)
	}
}

func (c *consoleConn) lostErr(err error) error {
	if errors.Is(err, syscall.EINVAL) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("connection to libvirtd lost: %w", err)
}

// Read reads console output.
func (c *consoleConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.pending) == 0 {
		if c.readErr != nil {
			return 0, c.readErr
		}
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		default:
		}
		select {
		case m := <-c.data:
			c.take(m)
		case <-c.sock.Disconnected():
			// Everything routed before the disconnect is queued already.
			select {
			case m := <-c.data:
				c.take(m)
			default:
				select {
				case <-c.closed:
					return 0, net.ErrClosed
				default:
				}
				c.readErr = c.lostErr(io.ErrUnexpectedEOF)
			}
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *consoleConn) take(m streamMsg) {
	if m.err != nil {
		c.readErr = m.err
		return
	}
	c.pending = m.data
}

// Write sends keystrokes to the console.
func (c *consoleConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		select {
		case <-c.closed:
			return n, net.ErrClosed
		default:
		}
		chunk := p
		if len(chunk) > streamChunk {
			chunk = chunk[:streamChunk]
		}
		if err := c.sock.SendPacket(c.streamSerial, procDomainOpenConsole, remoteProgram, chunk, socket.Stream, socket.StatusContinue); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return n, err
			}
			return n, c.lostErr(err)
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}

// Close aborts the stream and closes the libvirt connection.
func (c *consoleConn) Close() error {
	first := false
	c.closeOne.Do(func() {
		first = true
		close(c.closed)
	})
	if !first {
		return net.ErrClosed
	}
	c.mu.Lock()
	stream := c.streamSerial
	c.mu.Unlock()
	if stream != 0 {
		if conn := c.raw.get(); conn != nil {
			conn.SetWriteDeadline(time.Now().Add(time.Second))
		}
		// Abort the stream so that libvirtd frees the console at once,
		// then say goodbye; errors here only mean it is gone already.
		c.sock.SendPacket(stream, procDomainOpenConsole, remoteProgram, nil, socket.Stream, socket.StatusError)
	}
	c.sock.Disconnect()
	return nil
}

func (c *consoleConn) LocalAddr() net.Addr  { return c.addr }
func (c *consoleConn) RemoteAddr() net.Addr { return c.addr }

func (c *consoleConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *consoleConn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline applies to the libvirt connection's socket; a write
// that times out may have sent part of a packet, after which the stream
// is unusable.
func (c *consoleConn) SetWriteDeadline(t time.Time) error {
	if conn := c.raw.get(); conn != nil {
		return conn.SetWriteDeadline(t)
	}
	return nil
}

// capturingDialer remembers the conn it dialled, for write deadlines.
type capturingDialer struct {
	d    Dialer
	mu   sync.Mutex
	conn net.Conn
}

func (d *capturingDialer) Dial() (net.Conn, error) {
	c, err := d.d.Dial()
	if err == nil {
		d.mu.Lock()
		d.conn = c
		d.mu.Unlock()
	}
	return c, err
}

func (d *capturingDialer) get() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// deadline is a settable read deadline, as in net.Pipe.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

func makeDeadline() deadline { return deadline{cancel: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // wait for the timer callback to finish and close cancel
	}
	d.timer = nil
	closed := isClosedChan(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosedChan(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// xdrEncoder writes the few XDR shapes the console calls need.
type xdrEncoder struct{ b []byte }

func (e *xdrEncoder) uint32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *xdrEncoder) int32(v int32)   { e.uint32(uint32(v)) }

func (e *xdrEncoder) fixed(p []byte) {
	e.b = append(e.b, p...)
	for len(e.b)%4 != 0 {
		e.b = append(e.b, 0)
	}
}

func (e *xdrEncoder) string(s string) {
	e.uint32(uint32(len(s)))
	e.fixed([]byte(s))
}

// optString is libvirt's remote_string: a present pointer, then the string.
func (e *xdrEncoder) optString(s string) {
	e.uint32(1)
	e.string(s)
}

// decodeInts decodes an XDR array of int32.
func decodeInts(b []byte) ([]int32, error) {
	if len(b) < 4 {
		return nil, errors.New("short reply")
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(len(b)) < 4+4*uint64(n) {
		return nil, errors.New("short reply")
	}
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(binary.BigEndian.Uint32(b[4+4*i:]))
	}
	return out, nil
}

// decodeError decodes a remote_error into a libvirt.Error (code and
// message; the rest is not needed).
func decodeError(b []byte) error {
	if len(b) < 12 {
		return errors.New("libvirt error (no details)")
	}
	code := binary.BigEndian.Uint32(b)
	msg := ""
	if binary.BigEndian.Uint32(b[8:]) == 1 && len(b) >= 16 {
		n := binary.BigEndian.Uint32(b[12:])
		if uint64(len(b)) >= 16+uint64(n) {
			msg = string(b[16 : 16+n])
		}
	}
	if msg == "" {
		msg = fmt.Sprintf("libvirt error %d", code)
	}
	return libvirt.Error{Code: code, Message: msg}
}
