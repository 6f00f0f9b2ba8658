package proxy

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/sockread"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// How a session's end reaches the viewer: the close code and reason of
// its websocket (see the package doc for the table).
const (
	reasonShutdown = "proxy shutting down"
	reasonConsole  = "console closed unexpectedly"
	reasonClientHS = "console handshake failed"
	reasonAdmin    = "session ended by an administrator"
)

// closeFor is the close code and reason of a session that killedBy ended
// (the proxy's close of a session neither side closed): 4002 for an
// administrator's KillSession, 1001 going away otherwise (the drain
// period's end; a revoked token's session, as before KillSession; a
// share link's expiry or its shared session's end, with that reason).
func closeFor(killedBy string) (int, string) {
	switch killedBy {
	case KilledByShutdown, KilledByRevoke:
		return wsconn.CloseGoingAway, reasonShutdown
	case KilledByGrantExpiry, KilledBySharedEnd:
		return wsconn.CloseGoingAway, killedBy
	}
	return wsconn.CloseEndedByAdmin, reasonAdmin
}

// closeWith closes c, the viewer's websocket, with code and reason when
// it can carry them (a *wsconn.Conn), and plainly otherwise.
func closeWith(c net.Conn, code int, reason string) {
	if wc, ok := c.(interface{ CloseWithReason(int, string) error }); ok {
		wc.CloseWithReason(code, reason)
		return
	}
	c.Close()
}

// consoleSide is QEMU's side of a session, watched for failures: a read
// or write error that is not the console's end (EOF) or tunnel.Join
// closing it closes the viewer's websocket with 1011 and the reason,
// before Join's own close of it would send a normal closure.
type consoleSide struct {
	net.Conn
	viewer net.Conn          // the viewer's websocket
	lazy   tunnel.LazyReader // tunnel.LazyReaderFor(Conn)
}

func newConsoleSide(console, viewer net.Conn) *consoleSide {
	return &consoleSide{Conn: console, viewer: viewer, lazy: tunnel.LazyReaderFor(console)}
}

// ReadLazy lets tunnel.Join read the console holding no buffer while the
// session is idle, when the console is a plain socket; otherwise (TLS) it
// is Read into a buffer taken at once, as Join reads any conn.
func (c *consoleSide) ReadLazy(take func() []byte, release func()) ([]byte, int, error) {
	if c.lazy == nil {
		buf := take()
		n, err := c.Read(buf)
		return buf, n, err
	}
	buf, n, err := c.lazy.ReadLazy(take, release)
	c.check(err)
	return buf, n, err
}

// ParkableSocket lets tunnel.Join wait for an idle console elsewhere
// than on a goroutine (Proxy.Parking) when it is a plain socket.
func (c *consoleSide) ParkableSocket() *sockread.Reader {
	if p, ok := c.lazy.(tunnel.Parkable); ok {
		return p.ParkableSocket()
	}
	return nil
}

func (c *consoleSide) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.check(err)
	return n, err
}

func (c *consoleSide) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.check(err)
	return n, err
}

// CloseWrite passes tunnel.Join's half-close on; a conn without one
// reports an error, so that Join closes the session as it would have.
func (c *consoleSide) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("console connection cannot half-close")
}

func (c *consoleSide) check(err error) {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || err == sockread.ErrIdle {
		return
	}
	closeWith(c.viewer, wsconn.CloseInternalError, reasonConsole+": "+errorText(err))
}

// closeViewerFirst is the Join option that, when the session's context
// ends it (Shutdown giving up on the session, EndSessions or
// KillSession), first closes the viewer's websocket with closing's code
// and reason; nil when server is not a console side.
func closeViewerFirst(server net.Conn, closing func() (int, string)) tunnel.JoinOption {
	cs, ok := server.(*consoleSide)
	if !ok {
		return nil
	}
	return tunnel.WithOnCancel(func() {
		code, reason := closing()
		closeWith(cs.viewer, code, reason)
	})
}

// errorText is err on one line with the addresses of network errors left
// out: the reason goes to the client, which has no business knowing
// where the console is.
func errorText(err error) string {
	s := oneLine(err)
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		inner := oe.Err.Error()
		var errno syscall.Errno
		if errors.As(oe.Err, &errno) {
			inner = errno.Error()
		}
		s = strings.Replace(s, oe.Error(), inner, 1)
	}
	return s
}
