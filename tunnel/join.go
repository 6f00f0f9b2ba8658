package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtconsole/virtconsole/tunnel/park"
	"github.com/virtconsole/virtconsole/tunnel/sockread"
)

// DefaultLinger is how long Join lets the second direction of a session
// run after the first one ended with a half-close.
const DefaultLinger = 10 * time.Second

// Stats counts the bytes a Join copied.
type Stats struct {
	AToB int64 // read from a, written to b
	BToA int64 // read from b, written to a
}

// A JoinOption changes how Join runs.
type JoinOption func(*joinConfig)

type joinConfig struct {
	linger   time.Duration
	counters [2]*atomic.Int64
	taps     [2]func([]byte) error
	poller   *park.Poller
	parkIdle time.Duration
	onCancel func()
}

// WithLinger bounds how long the remaining direction may run after the
// other one has ended with a half-close (default DefaultLinger), so that a
// peer that never closes its side cannot pin the session. When it expires
// Join closes both conns; that is not an error. d <= 0 ends the session as
// soon as either direction ends.
func WithLinger(d time.Duration) JoinOption {
	return func(c *joinConfig) { c.linger = d }
}

// WithCounters makes Join add the bytes it copies to aToB and bToA as it
// copies them (either may be nil), so that others can read a running
// session's traffic (metrics) without waiting for Stats. One atomic add
// per write: nothing is allocated on the byte path.
func WithCounters(aToB, bToA *atomic.Int64) JoinOption {
	return func(c *joinConfig) { c.counters = [2]*atomic.Int64{aToB, bToA} }
}

// WithTap makes Join show the bytes it copies to aToB and bToA (either
// may be nil) before writing them on, in order, on the direction's own
// goroutine: a recorder's hook on the one copy loop, rather than a
// second loop (before, so that a fail-closed recorder lets no byte pass
// unrecorded). The slice is Join's buffer, valid only during the call: a
// tap copies what it keeps. A tap that returns an error ends the session
// with that error, as a failed write would.
func WithTap(aToB, bToA func([]byte) error) JoinOption {
	return func(c *joinConfig) { c.taps = [2]func([]byte) error{aToB, bToA} }
}

// WithOnCancel has Join call f when ctx ends the session, before it
// closes the conns: a proxy closes its viewer's websocket with a code and
// reason that say why, which Join's own close would not. f runs on the
// goroutine of ctx's AfterFunc.
func WithOnCancel(f func()) JoinOption {
	return func(c *joinConfig) { c.onCancel = f }
}

// WithParking lets one direction of the Join wait for its source in p
// without a goroutine while the source is quiet: once its source has had
// no input for between idle/2 and idle, the direction hands the socket to
// p and its goroutine ends; p's wake-up starts another when input, an end
// or an error comes. The other direction keeps Join's caller, so an idle
// session holds one goroutine instead of two (4 KiB of stack less each).
//
// The direction that parks is one whose source is a socket read through
// package sockread: a *net.TCPConn, a stream *net.UnixConn, or a wrapper
// passing its Reader on (Parkable); with none, or a nil p, nothing parks.
// Join then owns that source's read deadline. Input is read the moment
// the direction wakes, as it would have been; a wake-up costs an
// epoll_ctl(2) and starting a goroutine, at most once per idle/2.
func WithParking(p *park.Poller, idle time.Duration) JoinOption {
	return func(c *joinConfig) { c.poller, c.parkIdle = p, idle }
}

// Parkable is a LazyReader that Join can wait for in a park.Poller (see
// WithParking): a *sockread.Reader, or a conn type that passes ReadLazy on
// to one and returns it here (nil when it has none).
type Parkable interface {
	ParkableSocket() *sockread.Reader
}

// closeWriter is a conn that can shut down its writing side alone:
// *net.TCPConn, *net.UnixConn, *tls.Conn, *wsconn.Conn.
type closeWriter interface {
	CloseWrite() error
}

// Join copies a to b and b to a at the same time, and returns when both
// directions are done and both conns are closed. Join owns a and b.
//
// When a direction reads EOF, Join half-closes the conn it was writing to
// (CloseWrite, when the conn has it; otherwise it closes both) and lets the
// other direction run on, for at most the linger time (see WithLinger).
// An error in either direction closes both conns at once. Cancelling ctx
// closes both conns; Join then returns ctx.Err() unless a direction failed
// first.
//
// The error is the first real one: io.EOF, errors from conns after Join
// itself closed them, and a websocket's normal closure (which package
// wsconn reports as io.EOF) are not errors.
//
// Join runs one copy loop on the calling goroutine and one on a new
// goroutine, which ends while its source is parked (WithParking) and is
// started again when input comes; the linger bound and ctx are timers and
// callbacks that take a goroutine only for the moment they fire. Each loop reads into a
// pooled 2 KiB buffer and borrows a pooled 32 KiB one only while bulk
// data is flowing (see copyBuf). A loop whose source can be read lazily
// (a TCP or Unix socket, a websocket, a wrapper passing ReadLazy on: see
// LazyReader) gives both back whenever it has drained the source, so an
// idle session holds no buffer. Bytes are written on as soon as they are
// read: never held back to be coalesced.
func Join(ctx context.Context, a, b net.Conn, opts ...JoinOption) (Stats, error) {
	// Join's frame stays small, as do copy's: an idle proxy session's
	// goroutine waits under them (see tunnel/proxy's passing).
	j := beginJoin(ctx, a, b, opts)
	j.copy(1 - j.goDir)
	return j.finish(ctx)
}

// beginJoin makes the joiner, arms ctx's end and starts the direction
// that runs on a goroutine: the one that may park (a parked direction's
// goroutine ends), else a to b.
//
//go:noinline
func beginJoin(ctx context.Context, a, b net.Conn, opts []JoinOption) *joiner {
	j := newJoiner(a, b, opts)
	j.stop = context.AfterFunc(ctx, func() {
		if !j.finished.Load() {
			j.cancelled.Store(true)
			if j.onCancel != nil {
				j.onCancel()
			}
		}
		j.closeAll()
	})
	j.goDir = max(j.parkDir, 0)
	go j.run(j.goDir) // Join's: finish waits for done
	return j
}

// finish waits for the goroutine's direction and ends the Join.
//
//go:noinline
func (j *joiner) finish(ctx context.Context) (Stats, error) {
	<-j.done
	j.finished.Store(true)
	j.stop()
	j.mu.Lock()
	if j.timer != nil {
		j.timer.Stop()
	}
	err := j.err
	j.mu.Unlock()
	j.closeAll()

	if err == nil && j.cancelled.Load() {
		err = ctx.Err()
	}
	return Stats{AToB: j.n[0], BToA: j.n[1]}, err
}

func newJoiner(a, b net.Conn, opts []JoinOption) *joiner {
	j := &joiner{conns: [2]net.Conn{a, b}, done: make(chan struct{}), parkDir: -1}
	cfg := joinConfig{linger: DefaultLinger}
	for _, o := range opts {
		o(&cfg)
	}
	j.linger = cfg.linger
	j.onCancel = cfg.onCancel
	j.counters = cfg.counters
	j.taps = cfg.taps
	j.chooseReaders()
	if cfg.poller != nil && cfg.parkIdle > 0 {
		j.chooseParking(cfg.poller, cfg.parkIdle)
	}
	return j
}

// joiner is the state of one Join. Direction i copies conns[i] to
// conns[1-i].
type joiner struct {
	conns  [2]net.Conn
	lazies [2]LazyReader    // how direction i reads: see chooseReaders
	takes  [2]func() []byte // their buffer functions, made once
	gives  [2]func()
	linger time.Duration
	bufs   [2]copyBuf
	n      [2]int64 // bytes copied by direction i; owned by its loop

	onCancel func()                // WithOnCancel; nil: none
	counters [2]*atomic.Int64      // WithCounters; nil entries count nothing
	taps     [2]func([]byte) error // WithTap; nil entries see nothing

	// closed[i] is set just before Join closes conns[i]: errors from a
	// conn closed by Join are not errors.
	closed    [2]atomic.Bool
	closeOnce [2]sync.Once
	cancelled atomic.Bool // ctx ended the session
	finished  atomic.Bool // both directions are done

	done  chan struct{} // closed when the direction on Join's goroutine ends
	goDir int           // that direction
	stop  func() bool   // ctx's AfterFunc's

	// WithParking: the direction that may park (-1: none), its source's
	// Reader, the poller, and wake (made once), which resumes it.
	parkDir  int
	parkSock *sockread.Reader
	poller   *park.Poller
	wake     func()

	mu     sync.Mutex
	ended  int         // directions done
	timer  *time.Timer // linger
	err    error       // first real error
	parked bool        // parkDir waits in poller, under token
	token  park.Token
}

// chooseParking picks the direction that parks when idle: the first
// whose source is Parkable.
func (j *joiner) chooseParking(p *park.Poller, idle time.Duration) {
	for i, l := range j.lazies {
		pk, ok := l.(Parkable)
		if !ok {
			continue
		}
		if s := pk.ParkableSocket(); s != nil {
			s.SetIdle(idle)
			j.parkDir, j.parkSock, j.poller = i, s, p
			j.wake = func() { go j.run(i) } // owned by Join, which waits for done
			return
		}
	}
}

// run runs direction i on a goroutine of its own until it ends (closing
// done) or parks.
func (j *joiner) run(i int) {
	if !j.copy(i) {
		close(j.done)
	}
}

// park hands direction i's idle source to the poller, and reports
// whether it did: not once the session is closing (the direction reads
// on, to its end), nor when the poller is closed (the direction waits as
// without parking from now on).
func (j *joiner) park(i int) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed[0].Load() || j.closed[1].Load() {
		return false
	}
	t, err := j.poller.Wait(j.parkSock.RawConn(), j.wake)
	if err != nil {
		j.parkSock.SetIdle(0)
		return false
	}
	j.parked, j.token = true, t
	return true
}

// copy runs direction i until it ends, or until it parks (see
// WithParking), which it reports. Once parked, the direction is another
// goroutine's as soon as it wakes: nothing of it is touched after park.
func (j *joiner) copy(i int) (parked bool) {
	src, dst, lazy := j.conns[i], j.conns[1-i], j.lazies[i]
	bufs := &j.bufs[i]
	for {
		var buf []byte
		var nr int
		var rerr error
		if lazy != nil {
			buf, nr, rerr = lazy.ReadLazy(j.takes[i], j.gives[i])
		} else {
			buf = bufs.buf()
			nr, rerr = src.Read(buf)
		}
		if nr > 0 {
			if tap := j.taps[i]; tap != nil {
				if terr := tap(buf[:nr]); terr != nil {
					j.fail(-1, terr)
					return j.over(i)
				}
			}
			nw, werr := dst.Write(buf[:nr])
			j.n[i] += int64(nw)
			if c := j.counters[i]; c != nil {
				c.Add(int64(nw))
			}
			if werr == nil && nw != nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				j.fail(1-i, werr)
				return j.over(i)
			}
		}
		bufs.update(nr)
		if rerr != nil {
			if rerr == sockread.ErrIdle { // only with WithParking
				bufs.releaseAll()
				if j.park(i) {
					if testHookParked != nil {
						testHookParked(i)
					}
					return true
				}
				continue
			}
			if errors.Is(rerr, io.EOF) {
				j.eof(i)
			} else {
				j.fail(i, rerr)
			}
			return j.over(i)
		}
	}
}

// over gives back direction i's buffers as it ends: not parked.
func (j *joiner) over(i int) (parked bool) {
	j.bufs[i].releaseAll()
	return false
}

// eof ends direction i after its source read EOF: it passes the EOF on
// and bounds the other direction by the linger time.
func (j *joiner) eof(i int) {
	// Start the linger bound first: it also bounds a CloseWrite stuck on
	// a peer that does not read (a websocket's close frame is a write).
	j.mu.Lock()
	j.ended++
	first := j.ended == 1
	if first && j.linger > 0 {
		j.timer = time.AfterFunc(j.linger, j.closeAll)
	}
	j.mu.Unlock()
	if first && j.linger <= 0 {
		j.closeAll()
		return
	}

	if cw, ok := j.conns[1-i].(closeWriter); !ok || j.closed[1-i].Load() || cw.CloseWrite() != nil {
		// No half-close: end the session. A CloseWrite that fails means
		// the peer is gone, which the other direction reports if it is
		// still running.
		j.closeAll()
	}
}

// fail ends the session because of err, an error from conns[ci] (ci -1:
// from a tap, always an error).
func (j *joiner) fail(ci int, err error) {
	if ci < 0 || !j.closed[ci].Load() {
		j.mu.Lock()
		if j.err == nil {
			j.err = err
		}
		j.mu.Unlock()
	}
	j.closeAll()
	j.mu.Lock()
	j.ended++
	j.mu.Unlock()
}

// testHookParked, if set, is called when direction i has parked.
var testHookParked func(i int)

// closeAll closes both conns, once each, and wakes a parked direction
// (which then reads its end). A concurrent caller waits until the closes
// are done.
func (j *joiner) closeAll() {
	for i := range j.conns {
		j.closeOnce[i].Do(func() {
			j.closed[i].Store(true)
			j.conns[i].Close()
		})
	}
	j.mu.Lock()
	resume := j.parked && j.poller.Cancel(j.token)
	j.parked = false
	j.mu.Unlock()
	if resume {
		go j.run(j.parkDir) // Join's: it waits for done
	}
}
