package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/protocols/serial"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// consoleServer is a TCP console that hands each connection to serve.
func consoleServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return l.Addr().String()
}

// readEnd reads c until it ends and returns the error (nil: io.EOF) and
// the close frame the proxy sent.
func readEnd(t *testing.T, c net.Conn) (error, *wsconn.CloseError) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.Copy(io.Discard, c)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return err, c.(*wsconn.Conn).PeerClose()
}

// The viewer learns how its session ended from the close code and reason.
func TestSessionEndCloseCodes(t *testing.T) {
	t.Run("console reset", func(t *testing.T) {
		addr := consoleServer(t, func(c net.Conn) {
			c.(*net.TCPConn).SetLinger(0) // Close sends a reset
			io.ReadFull(c, make([]byte, 1))
			c.Close()
		})
		_, srv, _ := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: addr, Insecure: true}})
		c, err := dial(t, wsURL(srv), bearer("t"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		err, pc := readEnd(t, c)
		var ce *wsconn.CloseError
		if !errors.As(err, &ce) || ce.Code != wsconn.CloseInternalError {
			t.Fatalf("Read: %v, want close 1011", err)
		}
		if !strings.Contains(ce.Reason, "console closed unexpectedly") || !strings.Contains(ce.Reason, "reset") {
			t.Fatalf("reason %q does not say the console failed and why", ce.Reason)
		}
		if strings.Contains(ce.Reason, "127.0.0.1") {
			t.Fatalf("reason %q gives the console's address away", ce.Reason)
		}
		if pc == nil || *pc != *ce {
			t.Fatalf("PeerClose %v, want %v", pc, ce)
		}
	})

	t.Run("console ends", func(t *testing.T) {
		addr := consoleServer(t, func(c net.Conn) {
			io.ReadFull(c, make([]byte, 1))
			c.Close()
		})
		_, srv, _ := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: addr, Insecure: true}})
		c, err := dial(t, wsURL(srv), bearer("t"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		err, pc := readEnd(t, c)
		if err != nil || pc == nil || pc.Code != wsconn.CloseNormal {
			t.Fatalf("Read: %v, close %v: want io.EOF after a normal closure", err, pc)
		}
	})

	t.Run("viewer handshake refused", func(t *testing.T) {
		p, srv, _ := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: echoServer(t), Insecure: true}})
		p.Handshake = func(context.Context, protocols.Target, string, bool) (protocols.Handshaker, func(), error) {
			return refuser{serial.Handshaker{}}, nil, nil
		}
		c, err := dial(t, wsURL(srv), bearer("t"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err, _ = readEnd(t, c)
		var ce *wsconn.CloseError
		if !errors.As(err, &ce) || ce.Code != wsconn.CloseHandshakeFailed || ce.Reason != "console handshake failed: no common security type" {
			t.Fatalf("Read: %v, want close 4001 with the reason", err)
		}
	})

	t.Run("shutdown", func(t *testing.T) {
		p, srv, _ := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: echoServer(t), Insecure: true}})
		c, err := dial(t, wsURL(srv), bearer("t"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		p.Shutdown(ctx)
		err, pc := readEnd(t, c)
		if err != nil || pc == nil || pc.Code != wsconn.CloseGoingAway || pc.Reason != "proxy shutting down" {
			t.Fatalf("Read: %v, close %v: want io.EOF after 1001 proxy shutting down", err, pc)
		}
	})
}

// A viewer that pings but never reads cannot pin its session: the write
// toward it times out, the session ends and the console is released.
func TestStuckViewerReleasesConsole(t *testing.T) {
	released := make(chan error, 1)
	addr := consoleServer(t, func(c net.Conn) {
		defer c.Close()
		go func() { // the console talks without end
			buf := make([]byte, 32<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		_, err := io.Copy(io.Discard, c) // ends when the proxy lets go
		released <- err
	})
	p, srv, logs := newProxy(t, map[string]resolver.Console{"t": {Type: "serial", Address: addr, Insecure: true}})
	p.KeepAlive, p.DeadPeerTimeout = 100*time.Millisecond, 500*time.Millisecond

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The viewer pings every 50 ms, so it never counts as dead, and never
	// reads.
	c, err := wsconn.Dial(ctx, wsURL(srv), bearer("t"), &wsconn.DialOptions{KeepAlive: 50 * time.Millisecond, DeadPeerTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-released:
	case <-time.After(30 * time.Second):
		t.Fatalf("the console is still held 30 s after the viewer stopped reading; sessions %d\n%s", p.Active(), logs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.Active() != 0 || !strings.Contains(logs.String(), "session end") {
		if time.Now().After(deadline) {
			t.Fatalf("session not ended: %d active\n%s", p.Active(), logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refuser is a handshaker whose viewer side refuses, as an RFB security
// negotiation that finds nothing in common does.
type refuser struct{ protocols.Handshaker }

func (refuser) Client(context.Context, net.Conn, net.Conn) (net.Conn, net.Conn, error) {
	return nil, nil, errors.New("no common security type")
}

// TestConsoleSideReadLazy: over a plain TCP console, consoleSide passes
// tunnel.Join's lazy read on: the buffer is released while it waits and
// taken again for the console's data; over TLS, which buffers records,
// there is no lazy reader and Join reads as from any conn.
func TestConsoleSideReadLazy(t *testing.T) {
	qemu, console := nettest.TCPPair(t)
	viewer, _ := nettest.TCPPair(t)
	cs := newConsoleSide(console, viewer)
	var held atomic.Bool
	waiting := make(chan struct{}, 10)
	buf := make([]byte, 64)
	take := func() []byte { held.Store(true); return buf }
	release := func() { held.Store(false); waiting <- struct{}{} }
	type result struct {
		data string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		b, n, err := cs.ReadLazy(take, release)
		got <- result{string(b[:n]), err}
	}()
	select {
	case <-waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("ReadLazy did not wait")
	}
	if held.Load() {
		t.Fatal("ReadLazy holds the buffer while it waits")
	}
	qemu.Write([]byte("RFB 003.008\n"))
	select {
	case r := <-got:
		if r.data != "RFB 003.008\n" || r.err != nil {
			t.Fatalf("ReadLazy: %q, %v", r.data, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadLazy did not return when the console sent data")
	}

	if cs := newConsoleSide(tls.Client(console, &tls.Config{}), viewer); cs.lazy != nil {
		t.Fatal("a lazy reader for a TLS console")
	}
}
