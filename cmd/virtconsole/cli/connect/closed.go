package connect

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Read reads console data. Through the proxy, the end of the stream says
// how the session ended: any close but a normal closure (1000, or a
// close frame without a code) is a *ClosedError with the proxy's reason,
// so that the end of a drain (1001, which the websocket reads as io.EOF)
// is not taken for the console closing.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		err = sessionEnd(c.Conn, err)
	}
	return n, err
}

// ClosedError is a session the proxy ended with a close code other than
// a normal closure; cmdutil's exit table makes it ExitLost.
type ClosedError struct {
	*wsconn.CloseError
}

func (e *ClosedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("the proxy closed the session (websocket close %d)", e.Code)
	}
	return fmt.Sprintf("the proxy closed the session: %s (websocket close %d)", e.Reason, e.Code)
}

func (e *ClosedError) Unwrap() error { return e.CloseError }

// sessionEnd maps the error that ended reading from conn, the proxy's
// websocket, to a *ClosedError when the close frame says more than "the
// session ended".
func sessionEnd(conn net.Conn, err error) error {
	if ce, ok := errors.AsType[*wsconn.CloseError](err); ok {
		return &ClosedError{ce}
	}
	ws, ok := conn.(*wsconn.Conn)
	if !ok || !errors.Is(err, io.EOF) {
		return err
	}
	if pc := ws.PeerClose(); pc != nil && pc.Code != wsconn.CloseNormal && pc.Code != 1005 {
		return &ClosedError{pc}
	}
	return err
}
