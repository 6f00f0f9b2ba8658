package connect

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// TestSessionEnd: through the proxy, a close other than 1000 ends reading
// with a *ClosedError that gives the proxy's reason and exits 5; a normal
// closure is io.EOF.
func TestSessionEnd(t *testing.T) {
	for _, tc := range []struct {
		name   string
		code   int
		reason string
		want   string // in the error; "" means io.EOF
	}{
		{"normal", wsconn.CloseNormal, "", ""},
		{"going away", wsconn.CloseGoingAway, "proxy shutting down", "the proxy closed the session: proxy shutting down (websocket close 1001)"},
		{"console failed", wsconn.CloseInternalError, "console closed unexpectedly: connection reset by peer",
			"the proxy closed the session: console closed unexpectedly: connection reset by peer (websocket close 1011)"},
		{"no reason", wsconn.ClosePeerTimeout, "", "the proxy closed the session (websocket close 4000)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, err := wsconn.Upgrade(w, r, nil)
				if err != nil {
					return
				}
				c.Write([]byte("data"))
				c.(*wsconn.Conn).CloseWithReason(tc.code, tc.reason)
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, err := wsconn.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var c net.Conn = &Conn{Conn: ws}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(c)
			if string(got) != "data" {
				t.Fatalf("read %q before the close", got)
			}
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ReadAll: %v, want io.EOF", err)
				}
				return
			}
			if ce, ok := errors.AsType[*ClosedError](err); !ok || ce.Code != tc.code || err.Error() != tc.want {
				t.Fatalf("ReadAll: %v, want a *ClosedError %q", err, tc.want)
			}
			if code := cmdutil.ExitCode(err); code != cmdutil.ExitLost {
				t.Fatalf("exit code %d, want %d", code, cmdutil.ExitLost)
			}
		})
	}
}
