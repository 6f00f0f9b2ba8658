package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// A text console (serial, console) has one backend connection: QEMU's
// TCP chardev serves one client and libvirt's console stream is
// exclusive. So the proxy fans it out: a hub per console owns the one
// connection, sends what the console writes to every viewer and writes
// what control viewers type to the console. Its memory is bounded: a
// scrollback ring for late joiners and a queue per viewer; a viewer whose
// queue stays full is dropped (4003) rather than stopping the others.
const (
	// ScrollbackBytes is how much of a text console's latest output a
	// viewer joining a live session gets first.
	ScrollbackBytes = 64 << 10
	// ViewerQueueBytes bounds the output waiting for one viewer of a text
	// console; past it the viewer is dropped with 4003 "viewer too slow".
	ViewerQueueBytes = 256 << 10
	// ViewerStall is how long a viewer whose queue is full may take
	// nothing from it before it is dropped; the console waits for it
	// meanwhile.
	ViewerStall = 5 * time.Second
)

const reasonTooSlow = "viewer too slow"

var errTooSlow = errors.New(reasonTooSlow)

// hubKey is the join key of a text console: the console itself, never
// the token (with single-use tokens each viewer brings its own).
func hubKey(t protocols.Target) string {
	return string(t.Kind) + " " + t.DomainUUID + " " + t.Address
}

// hubs are the live hubs by key.
type hubs struct {
	mu sync.Mutex
	m  map[string]*hub
}

// hub is one shared text console. Its reader goroutine is waited for by
// whoever drops the last reference (release) or, if the console ended
// first, by the same release.
type hub struct {
	hubs *hubs
	key  string
	id   string // the shared session's name: its viewers' Info.Session

	ready   chan struct{} // closed once dialled (or failed: openErr)
	openErr *Error
	conn    net.Conn // the console; set before ready is closed
	info    protocols.Info
	done    chan struct{} // closed when the reader goroutine returns

	refs int // guarded by hubs.mu: upstreams holding the hub

	wmu sync.Mutex // serialises control viewers' writes to conn

	// The reader's: a viewer's writer signals drained after taking its
	// queue; stall bounds the reader's wait for one.
	drained chan struct{}
	stall   *time.Timer

	mu       sync.Mutex
	ring     ring
	viewers  map[*hubViewer]struct{}
	ended    bool
	endCode  int
	endCause string // "" for a clean end
}

// hubViewer is one viewer's side of a hub: output queued for it, swapped
// with spare by its writer so that nothing is allocated per chunk.
type hubViewer struct {
	wake  chan struct{} // cap 1: output or an end is waiting
	pend  []byte        // guarded by hub.mu
	stop  error         // guarded by hub.mu: errTooSlow, or errConsoleEnded
	took  time.Time     // guarded by hub.mu: when the writer last took pend, or pend filled from empty
	spare []byte        // the writer's own

	rec  Recording // the viewer's session's recording; nil when not recorded
	name string    // the viewer, for the others' recordings' markers
}

var errConsoleEnded = errors.New("console ended")

// acquire returns the live hub of t, taking a reference, or creates one
// and reports true: the caller must then dial and call opened.
func (hs *hubs) acquire(t protocols.Target) (h *hub, created bool) {
	key := hubKey(t)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h := hs.m[key]; h != nil {
		h.refs++
		return h, false
	}
	if hs.m == nil {
		hs.m = make(map[string]*hub)
	}
	h = &hub{hubs: hs, key: key, id: newSessionID(), ready: make(chan struct{}), done: make(chan struct{}), refs: 1,
		viewers: make(map[*hubViewer]struct{})}
	hs.m[key] = h
	return h, true
}

// forget removes h from the live hubs (if still there): later viewers
// open the console anew.
func (hs *hubs) forget(h *hub) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.m[h.key] == h {
		delete(hs.m, h.key)
	}
}

// opened is the creator's report: the console's conn, or why it could not
// be opened (every viewer waiting for it fails with the same error).
func (h *hub) opened(conn net.Conn, info protocols.Info, herr *Error) {
	if herr != nil {
		h.openErr = herr
		h.hubs.forget(h)
		close(h.done)
		close(h.ready)
		return
	}
	h.conn, h.info = conn, info
	h.drained = make(chan struct{}, 1)
	h.stall = time.NewTimer(time.Hour)
	h.stall.Stop()
	h.info.Session = h.id
	close(h.ready)
	go h.read() // owned by h: release waits for done
}

// wait waits until h's console is open.
func (h *hub) wait(ctx context.Context) *Error {
	select {
	case <-h.ready:
		return h.openErr
	case <-ctx.Done():
		return fail(http.StatusBadGateway, ctx.Err(), "console busy opening; try again")
	}
}

// release drops one reference; the last one closes the console and waits
// for the reader.
func (h *hub) release() {
	h.hubs.mu.Lock()
	h.refs--
	last := h.refs == 0
	if last && h.hubs.m[h.key] == h {
		delete(h.hubs.m, h.key)
	}
	h.hubs.mu.Unlock()
	if !last {
		return
	}
	<-h.ready // the creator releases only after opened
	if h.conn != nil {
		h.conn.Close()
	}
	<-h.done
}

// read copies the console's output to the ring and to every viewer's
// queue until the console ends.
func (h *hub) read() {
	defer close(h.done)
	buf := make([]byte, 8<<10) // serial output is slow: small is enough
	for {
		n, err := h.conn.Read(buf)
		if n > 0 {
			h.deliver(buf[:n])
		}
		if err != nil {
			h.end(err)
			return
		}
	}
}

// deliver queues p for every viewer. While a viewer's queue is full the
// console waits (backpressure, as for a single viewer), but for at most
// ViewerStall without that viewer taking anything: then it is dropped,
// so that one viewer that stopped reading cannot stop the others.
func (h *hub) deliver(p []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		now := time.Now()
		wait := time.Duration(0)
		for v := range h.viewers {
			if v.stop != nil || len(v.pend)+len(p) <= ViewerQueueBytes {
				continue
			}
			if left := ViewerStall - now.Sub(v.took); left > 0 {
				wait = max(wait, left)
				continue
			}
			v.stop = errTooSlow
			v.pend = v.pend[:0]
			v.signal()
		}
		if wait == 0 {
			break
		}
		h.mu.Unlock()
		h.stall.Reset(wait)
		select {
		case <-h.drained:
		case <-h.stall.C:
		}
		h.stall.Stop()
		h.mu.Lock()
	}
	h.ring.write(p)
	now := time.Now()
	for v := range h.viewers {
		if v.stop == nil {
			if len(v.pend) == 0 {
				v.took = now // its clock starts when output waits for it
			}
			v.pend = append(v.pend, p...)
			v.signal()
		}
	}
}

// end ends h with the console's err: every viewer gets what is queued
// for it and then the console's end.
func (h *hub) end(err error) {
	h.hubs.forget(h)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return
	}
	h.ended = true
	h.endCode = wsconn.CloseNormal
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		h.endCode, h.endCause = wsconn.CloseInternalError, reasonConsole+": "+errorText(err)
	}
	for v := range h.viewers {
		if v.stop == nil {
			v.stop = errConsoleEnded
		}
		v.signal()
	}
}

// input writes a control viewer's bytes to the console. A failure ends
// the hub: the console is gone for everyone.
func (h *hub) input(p []byte) error {
	h.wmu.Lock()
	_, err := h.conn.Write(p)
	h.wmu.Unlock()
	if err != nil {
		h.end(err)
		h.conn.Close()
	}
	return err
}

// signalDrained wakes the reader if it waits for a viewer's room.
func (h *hub) signalDrained() {
	select {
	case h.drained <- struct{}{}:
	default:
	}
}

func (v *hubViewer) signal() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// serve passes one viewer's session on h until the viewer leaves, is
// dropped, the console ends or ctx does (which first closes the viewer's
// websocket with the code and reason closing returns). It owns ws. The
// viewer first gets the scrollback; its input reaches the console only
// if sess.Role is RoleControl. rec, if not nil, records what the viewer
// gets and its input, and markers for the other viewers joining and
// leaving; its failure ends the session (1011).
func (h *hub) serve(ctx context.Context, ws net.Conn, sess *Session, rec Recording, closing func() (int, string)) (tunnel.Stats, error) {
	role, toConsole, fromConsole := sess.Role, &sess.BytesToConsole, &sess.BytesFromConsole
	v := &hubViewer{wake: make(chan struct{}, 1), rec: rec, name: viewerName(sess)}
	h.mu.Lock()
	if h.ended {
		code, cause := h.endCode, h.endCause
		h.mu.Unlock()
		closeWith(ws, code, cause)
		if cause != "" {
			return tunnel.Stats{}, errors.New(cause)
		}
		return tunnel.Stats{}, nil
	}
	v.pend = h.ring.appendTo(make([]byte, 0, 4<<10))
	v.took = time.Now()
	h.markLocked(v, "viewer joined: ")
	h.viewers[v] = struct{}{}
	v.signal()
	h.mu.Unlock()

	killed := make(chan struct{})
	stopKill := context.AfterFunc(ctx, func() {
		defer close(killed)
		code, reason := closing()
		closeWith(ws, code, reason)
	})
	wctx, stopWriter := context.WithCancel(context.WithoutCancel(ctx))
	var stats tunnel.Stats
	var werr error
	wdone := make(chan struct{})
	go func() { // owned by serve: waited for below
		defer close(wdone)
		stats.BToA, werr = h.write(wctx, ws, v, fromConsole)
	}()

	buf := make([]byte, 4<<10)
	var rerr error
	left := true // the viewer left (or was closed), rather than the console
	for {
		n, err := ws.Read(buf)
		if n > 0 && role != protocols.RoleView {
			if rec != nil {
				if rerr = rec.Input(buf[:n]); rerr != nil {
					closeWith(ws, wsconn.CloseInternalError, reasonRecording+": "+oneLine(rerr))
					rerr = fmt.Errorf("%s: %w", reasonRecording, rerr)
					break
				}
			}
			if h.input(buf[:n]) != nil {
				left = false // the hub has ended: the writer tells the viewer
				break
			}
			stats.AToB += int64(n)
			toConsole.Add(int64(n))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				rerr = err
			}
			break
		}
	}
	if left {
		stopWriter()
	}
	<-wdone
	stopWriter()
	h.mu.Lock()
	delete(h.viewers, v)
	h.markLocked(v, "viewer left: ")
	h.mu.Unlock()
	h.signalDrained() // the reader may be waiting for this viewer
	ws.Close()
	if !stopKill() {
		<-killed
	}
	if werr != nil {
		return stats, werr
	}
	return stats, rerr
}

// write is a viewer's writer: it sends what is queued for v until ctx
// ends, v is dropped (4003) or the console ends (v's queue is sent, then
// the console's end). It returns the bytes written and why v was dropped.
func (h *hub) write(ctx context.Context, ws net.Conn, v *hubViewer, fromConsole *atomic.Int64) (int64, error) {
	var n int64
	for {
		select {
		case <-v.wake:
		case <-ctx.Done():
			return n, nil
		}
		h.mu.Lock()
		out, stop := v.pend, v.stop
		v.pend, v.spare = v.spare[:0], nil
		v.took = time.Now()
		code, cause := h.endCode, h.endCause
		h.mu.Unlock()
		h.signalDrained()
		if stop == errTooSlow {
			closeWith(ws, wsconn.CloseViewerTooSlow, reasonTooSlow)
			return n, errTooSlow
		}
		if len(out) > 0 && v.rec != nil {
			if err := v.rec.Output(out); err != nil {
				closeWith(ws, wsconn.CloseInternalError, reasonRecording+": "+oneLine(err))
				return n, fmt.Errorf("%s: %w", reasonRecording, err)
			}
		}
		if len(out) > 0 {
			w, err := ws.Write(out)
			n += int64(w)
			fromConsole.Add(int64(w))
			if err != nil {
				ws.Close()
				if errors.Is(err, net.ErrClosed) {
					err = nil // closed by serve or a kill
				}
				return n, err
			}
		}
		v.spare = out[:0]
		if stop != nil {
			closeWith(ws, code, cause)
			if cause != "" {
				return n, errors.New(cause)
			}
			return n, nil
		}
	}
}

// markLocked notes v joining or leaving in the other viewers'
// recordings (h.mu held). A marker that fails is left out: the
// recording's next output or input reports the failure.
func (h *hub) markLocked(v *hubViewer, what string) {
	for o := range h.viewers {
		if o != v && o.rec != nil {
			o.rec.Marker(what + v.name)
		}
	}
}

// viewerName identifies a viewer in markers: its session ID, address
// and certificate subject (never its token).
func viewerName(s *Session) string {
	name := "session " + s.ID + " from " + s.Client.Addr
	if s.Client.CertSubject != "" {
		name += " (" + s.Client.CertSubject + ")"
	}
	return name
}

// ring is the last ScrollbackBytes of a console's output, grown as
// output comes (a quiet console costs nothing).
type ring struct {
	buf   []byte
	start int // the oldest byte, once buf is full
}

func (r *ring) write(p []byte) {
	if len(p) >= ScrollbackBytes {
		r.buf = append(r.buf[:0], p[len(p)-ScrollbackBytes:]...)
		r.start = 0
		return
	}
	if room := ScrollbackBytes - len(r.buf); room > 0 {
		n := min(room, len(p))
		r.buf = append(r.buf, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 {
		n := copy(r.buf[r.start:], p)
		p = p[n:]
		r.start = (r.start + n) % ScrollbackBytes
	}
}

// appendTo appends the ring's bytes, oldest first, to dst.
func (r *ring) appendTo(dst []byte) []byte {
	return append(append(dst, r.buf[r.start:]...), r.buf[:r.start]...)
}
