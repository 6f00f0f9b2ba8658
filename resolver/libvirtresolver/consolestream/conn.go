package consolestream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-libvirt/socket"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

type rpcReply struct {
	status  uint32
	payload []byte
}

type streamMsg struct {
	data []byte
	err  error // io.EOF at the end of the stream
}

// conn is a libvirt console stream as a net.Conn, and the socket.Router
// of the connection it runs on.
type conn struct {
	u    *transport.URI
	addr Addr
	sock *socket.Socket
	raw  *transport.Captured

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
func (c *conn) Route(h *socket.Header, buf []byte) {
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

func (c *conn) call(proc uint32, payload []byte) ([]byte, error) {
	c.mu.Lock()
	c.serial++
	serial := c.serial
	c.mu.Unlock()
	return c.callSerial(serial, proc, payload)
}

func (c *conn) callSerial(serial int32, proc uint32, payload []byte) ([]byte, error) {
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

func (c *conn) lostErr(err error) error {
	if errors.Is(err, syscall.EINVAL) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("connection to libvirtd lost: %w", err)
}

// Read reads console output.
func (c *conn) Read(p []byte) (int, error) {
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

func (c *conn) take(m streamMsg) {
	if m.err != nil {
		c.readErr = m.err
		return
	}
	c.pending = m.data
}

// Write sends keystrokes to the console.
func (c *conn) Write(p []byte) (int, error) {
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
func (c *conn) Close() error {
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
		if conn := c.raw.Conn(); conn != nil {
			conn.SetWriteDeadline(time.Now().Add(time.Second))
		}
		// Abort the stream so that libvirtd frees the console at once,
		// then say goodbye; errors here only mean it is gone already.
		c.sock.SendPacket(stream, procDomainOpenConsole, remoteProgram, nil, socket.Stream, socket.StatusError)
	}
	c.sock.Disconnect()
	return nil
}

func (c *conn) LocalAddr() net.Addr  { return c.addr }
func (c *conn) RemoteAddr() net.Addr { return c.addr }

func (c *conn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.rdl.set(t)
	return nil
}

// SetWriteDeadline applies to the libvirt connection's socket; a write
// that times out may have sent part of a packet, after which the stream
// is unusable.
func (c *conn) SetWriteDeadline(t time.Time) error {
	if conn := c.raw.Conn(); conn != nil {
		return conn.SetWriteDeadline(t)
	}
	return nil
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
