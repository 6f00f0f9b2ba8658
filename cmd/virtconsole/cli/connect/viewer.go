package connect

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/virtconsole/virtconsole/tunnel"
)

// DialViewer opens a connection to the console on which the caller speaks
// as a viewer from the first byte (an RFB version exchange, a SPICE link),
// whatever the mode. Through the proxy it is the websocket itself: the
// proxy did QEMU's side of the handshake and serves the viewer's (RFB
// with security None, SPICE links forwarded). Directly, this side does
// both: QEMU's leg is Dial's, the viewer's leg (Conn.Attach) runs on one
// end of an in-process pipe whose other end is returned, and the two are
// joined (tunnel.Join) on a goroutine that the returned conn's Close
// waits for. A failure of the viewer's leg is what the returned conn's
// Read reports instead of EOF.
func (r *Route) DialViewer(ctx context.Context) (net.Conn, error) {
	c, err := r.Dial(ctx)
	if err != nil {
		return nil, err
	}
	if c.hs == nil {
		return c, nil
	}
	mine, theirs := net.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	v := &viewerConn{Conn: mine, cancel: cancel, attached: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(v.done)
		viewer, console, err := c.Attach(ctx, theirs)
		if err != nil {
			v.attachErr = err
			close(v.attached)
			theirs.Close()
			return
		}
		close(v.attached)
		tunnel.Join(ctx, viewer, console)
	}()
	return v, nil
}

// viewerConn is the caller's end of DialViewer's pipe in direct mode.
type viewerConn struct {
	net.Conn
	cancel    context.CancelFunc
	attached  chan struct{} // closed when Attach has returned
	attachErr error         // set before attached is closed
	done      chan struct{} // closed when the goroutine has returned
	once      sync.Once
}

// Read reports a failed viewer leg as its error rather than as EOF.
func (v *viewerConn) Read(p []byte) (int, error) {
	n, err := v.Conn.Read(p)
	if err != nil && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)) {
		select {
		case <-v.attached:
			if v.attachErr != nil {
				return n, v.attachErr
			}
		default:
		}
	}
	return n, err
}

// Close closes the pipe and waits for the goroutine that served it.
func (v *viewerConn) Close() error {
	err := v.Conn.Close()
	v.once.Do(func() {
		v.cancel()
		<-v.done
	})
	return err
}
