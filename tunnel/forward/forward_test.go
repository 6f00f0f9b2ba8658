package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

func echoHandler(ctx context.Context, c net.Conn) error {
	defer c.Close()
	_, err := io.Copy(c, c)
	return err
}

// Several connections at once are each served by their own handler.
func TestConcurrentConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{Listener: l, Handler: echoHandler}
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()

	var conns []net.Conn
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		msg := []byte{'a' + byte(i)}
		c.Write(msg)
		got := make([]byte, 1)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || got[0] != msg[0] {
			t.Fatalf("conn %d: got %q, %v", i, got, err)
		}
	}
	cancel()
	for _, c := range conns {
		c.Close()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// Once mode serves one connection, refuses later ones and returns the
// handler's error.
func TestOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	want := errors.New("handler result")
	var calls atomic.Int32
	f := &Forwarder{Listener: l, Once: true, Handler: func(ctx context.Context, c net.Conn) error {
		calls.Add(1)
		c.Close()
		return want
	}}
	done := make(chan error, 1)
	go func() { done <- f.Serve(context.Background()) }()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; !errors.Is(err, want) {
		t.Fatalf("Serve = %v, want %v", err, want)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Fatal("listener still accepting after the first connection")
	}
	if calls.Load() != 1 {
		t.Fatalf("handler ran %d times", calls.Load())
	}
}

// MaxConns bounds concurrent handlers.
func TestMaxConns(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var active, peak atomic.Int32
	release := make(chan struct{})
	f := &Forwarder{Listener: l, MaxConns: 2, Handler: func(ctx context.Context, c net.Conn) error {
		n := active.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		active.Add(-1)
		return c.Close()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()
	for i := 0; i < 4; i++ {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for active.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	cancel()
	<-done
	if peak.Load() != 2 {
		t.Fatalf("peak concurrent handlers = %d, want 2", peak.Load())
	}
}
