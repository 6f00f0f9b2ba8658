package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// shortWaits makes dialGreeting give up on a silent conn quickly.
func shortWaits(t *testing.T) {
	old, oldMax := firstByteWait, maxFirstByteWait
	firstByteWait, maxFirstByteWait = 50*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { firstByteWait, maxFirstByteWait = old, oldMax })
}

// greeter is a loopback server that speaks first, as QEMU's VNC server
// does, except on the connections silent picks: those it holds open and
// never greets, as if the kernel had never handed them to it.
type greeter struct {
	ln     net.Listener
	silent func(n int) bool // n counts connections from 1
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	n      atomic.Int32 // connections accepted
}

func startGreeter(t *testing.T, silent func(n int) bool) *greeter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &greeter{ln: ln, silent: silent}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.mu.Lock()
			g.conns = append(g.conns, c)
			g.mu.Unlock()
			if g.silent(int(g.n.Add(1))) {
				continue
			}
			c.Write([]byte("RFB 003.008\n"))
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		g.wg.Wait()
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, c := range g.conns {
			c.Close()
		}
	})
	return g
}

func vncTarget(addr string) protocols.Target {
	return protocols.Target{Kind: protocols.KindVNC, Address: addr, Insecure: true}
}

func readVersion(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 12)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "RFB 003.008\n" {
		t.Fatalf("read %q, %v; want QEMU's version, first byte included", b, err)
	}
}

// TestDialTargetRedialsSilentVNC: connections on which the server never
// speaks are closed and dialled again until one is greeted.
func TestDialTargetRedialsSilentVNC(t *testing.T) {
	shortWaits(t)
	g := startGreeter(t, func(n int) bool { return n <= 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := DialTarget(ctx, nil, vncTarget(g.ln.Addr().String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readVersion(t, c)
	// More if a greeting was slower than the short wait (a loaded machine).
	if n := g.n.Load(); n < 4 {
		t.Fatalf("%d connections, want 3 silent ones and the greeted one", n)
	}
}

// TestDialTargetSilentVNCOutOfTime: when the caller's ctx ends while the
// server is still silent, the conn comes back as it is so the handshake
// reports where it was stuck.
func TestDialTargetSilentVNCOutOfTime(t *testing.T) {
	shortWaits(t)
	g := startGreeter(t, func(int) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := DialTarget(ctx, nil, vncTarget(g.ln.Addr().String()), nil)
	if err != nil {
		t.Fatalf("got %v, want the last conn", err)
	}
	defer c.Close()
	if g.n.Load() < 2 {
		t.Fatalf("%d connections, want redials", g.n.Load())
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Fatalf("read %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestDialTargetVNCClosed: a server that closes instead of greeting is not
// redialled; the handshake reads the EOF.
func TestDialTargetVNCClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-done }()
	c, err := DialTarget(context.Background(), nil, vncTarget(ln.Addr().String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
}

// TestDialTargetRefusedVNC: a refused dial fails at once, without redials.
func TestDialTargetRefusedVNC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = DialTarget(context.Background(), nil, vncTarget(addr), nil)
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("got %v, want connection refused", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestDialTargetVNCBurst: concurrent dials to one address wait for each
// other's greeting (one silent conn at a time toward the server) and all
// get through, the silent ones redialled.
func TestDialTargetVNCBurst(t *testing.T) {
	shortWaits(t)
	g := startGreeter(t, func(n int) bool { return n%3 == 0 })
	addr := g.ln.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		wg                sync.WaitGroup
		inDial, maxInDial atomic.Int32
	)
	d := dialerFunc(func(ctx context.Context, network, address string) (net.Conn, error) {
		n := inDial.Add(1)
		for m := maxInDial.Load(); n > m && !maxInDial.CompareAndSwap(m, n); m = maxInDial.Load() {
		}
		defer inDial.Add(-1)
		return new(net.Dialer).DialContext(ctx, network, address)
	})
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := DialTarget(ctx, d, vncTarget(addr), nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			b := make([]byte, 12)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, b); err != nil || string(b) != "RFB 003.008\n" {
				errs <- errors.New("no version: " + string(b))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if m := maxInDial.Load(); m != 1 {
		t.Errorf("%d dials at once to one address, want 1", m)
	}
	dialGates.mu.Lock()
	defer dialGates.mu.Unlock()
	if len(dialGates.m) != 0 {
		t.Errorf("%d gates left", len(dialGates.m))
	}
}

// TestDialTargetNotVNC: other consoles are dialled once, without waiting
// for a byte (serial sends nothing first).
func TestDialTargetNotVNC(t *testing.T) {
	g := startGreeter(t, func(int) bool { return true })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := DialTarget(ctx, nil, protocols.Target{Kind: protocols.KindSerial, Address: g.ln.Addr().String(), Insecure: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("serial conn is %T, want the plain *net.TCPConn", c)
	}
}

type dialerFunc func(ctx context.Context, network, address string) (net.Conn, error)

func (f dialerFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}
