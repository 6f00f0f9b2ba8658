package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// chardev is a fake QEMU TCP chardev: it echoes each byte as "<b>", and
// answers "F" with flood bytes of output. It records what it read and
// how many clients it accepted; one at a time, like QEMU's.
type chardev struct {
	flood   int
	mu      sync.Mutex
	got     bytes.Buffer
	accepts int
	closed  chan struct{} // gets a value when a client's connection ends
}

func startChardev(t *testing.T, flood int) (*chardev, string) {
	t.Helper()
	d := &chardev{flood: flood, closed: make(chan struct{}, 10)}
	addr := consoleServer(t, func(c net.Conn) {
		d.mu.Lock()
		d.accepts++
		d.mu.Unlock()
		defer func() { d.closed <- struct{}{} }()
		buf := make([]byte, 1)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			d.mu.Lock()
			d.got.WriteByte(buf[0])
			d.mu.Unlock()
			out := []byte{'<', buf[0], '>'}
			if buf[0] == 'F' {
				out = bytes.Repeat([]byte{'.'}, d.flood)
			}
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
	return d, addr
}

func (d *chardev) read() (string, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.got.String(), d.accepts
}

// readUntil reads c until what it read holds want.
func readUntil(t *testing.T, c net.Conn, want string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got []byte
	buf := make([]byte, 64<<10)
	for !bytes.Contains(got, []byte(want)) {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			t.Fatalf("read %q, then %v; want %q", got, err, want)
		}
	}
	return string(got)
}

func withRole(tok string, role protocols.Role) http.Header {
	h := bearer(tok)
	h.Set(RoleHeader, string(role))
	return h
}

// TestSharedSerial: viewers of one serial console share its one
// connection. Output reaches every viewer, input only from control
// viewers (a view token's, or a viewer that asked for view), a late
// joiner first gets the scrollback, Sessions lists every viewer with its
// role, a viewer cannot ask for more than its token grants, and the last
// viewer's leaving closes the console's connection.
func TestSharedSerial(t *testing.T) {
	d, addr := startChardev(t, 0)
	p, srv, _ := newProxy(t, map[string]resolver.Console{
		"ctl":  {Type: "serial", Address: addr, Insecure: true},
		"look": {Type: "serial", Address: addr, Insecure: true, Role: "view"},
	})
	p.Limiter = nil

	a, err := dial(t, wsURL(srv), bearer("ctl"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Write([]byte("1"))
	readUntil(t, a, "<1>")

	b, err := dial(t, wsURL(srv), withRole("ctl", protocols.RoleView)) // asked for less
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	readUntil(t, b, "<1>")                                                 // the scrollback
	c, err := dial(t, wsURL(srv), withRole("look", protocols.RoleControl)) // cannot ask for more
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readUntil(t, c, "<1>")

	b.Write([]byte("b"))
	c.Write([]byte("c"))
	a.Write([]byte("2"))
	for _, v := range []net.Conn{a, b, c} {
		if got := readUntil(t, v, "<2>"); bytes.Contains([]byte(got), []byte("<b>")) || bytes.Contains([]byte(got), []byte("<c>")) {
			t.Fatalf("a view viewer's input reached the console: %q", got)
		}
	}
	if got, accepts := d.read(); got != "12" || accepts != 1 {
		t.Fatalf("the console read %q in %d connections, want \"12\" in 1", got, accepts)
	}

	list := p.Sessions()
	if len(list) != 1 || list[0].Viewers != 3 || len(list[0].Connections) != 3 {
		t.Fatalf("Sessions: %+v, want one session of 3 viewers", list)
	}
	roles := ""
	for _, c := range list[0].Connections {
		roles += string(c.Role) + " "
	}
	if roles != "control view view " {
		t.Fatalf("roles %q, want control view view (oldest first)", roles)
	}

	if _, err := dial(t, wsURL(srv), withRole("ctl", "admin")); err == nil {
		t.Fatal("an unknown role was accepted")
	} else if he := (*wsconn.HandshakeError)(nil); !errors.As(err, &he) || he.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown role: %v, want 400", err)
	}

	a.Close()
	b.Close()
	select {
	case <-d.closed:
		t.Fatal("the console was closed while a viewer remained")
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	select {
	case <-d.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the console stayed open after the last viewer left")
	}
}

// TestSharedSerialSlowViewer: a viewer that stops reading is dropped with
// 4003 "viewer too slow" while the other gets every byte.
func TestSharedSerialSlowViewer(t *testing.T) {
	const flood = 32 << 20 // past the queue and both sides' socket buffers
	_, addr := startChardev(t, flood)
	p, srv, _ := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: addr, Insecure: true}})
	p.Limiter = nil

	fast, err := dial(t, wsURL(srv), bearer("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	slow, err := dial(t, wsURL(srv), bearer("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast.Write([]byte("x"))
	readUntil(t, fast, "<x>")
	readUntil(t, slow, "<x>")

	fast.Write([]byte("F"))
	fast.SetReadDeadline(time.Now().Add(60 * time.Second))
	n, err := io.CopyN(io.Discard, fast, flood)
	if err != nil {
		t.Fatalf("the reading viewer got %d of %d bytes: %v", n, flood, err)
	}

	err, pc := readEnd(t, slow)
	var ce *wsconn.CloseError
	if !errors.As(err, &ce) || ce.Code != wsconn.CloseViewerTooSlow || ce.Reason != "viewer too slow" || pc == nil {
		t.Fatalf("the slow viewer's end: %v, want close 4003 viewer too slow", err)
	}
	fast.Write([]byte("y"))
	readUntil(t, fast, "<y>")
}
