package connlimit

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// dialFrom connects to addr from the loopback address from (127.0.0.0/8
// is all loopback on Linux).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer reports whether the server closed c: a read ends in EOF
// (or a reset) rather than the deadline.
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// TestPerAddress: one address beyond its bound is closed at once while
// another address is still accepted, and a closed connection frees its
// slot.
func TestPerAddress(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(raw, 3)
	refused := make(chan string, 100)
	l.Refused = func(h string) { refused <- h }
	accepted := make(chan net.Conn, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	})
	defer func() {
		l.Close()
		wg.Wait()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	}()
	addr := raw.Addr().String()

	var greedy []net.Conn
	for i := 0; i < 10; i++ {
		greedy = append(greedy, dialFrom(t, "127.0.0.2", addr))
	}
	var kept []net.Conn
	for range 3 {
		kept = append(kept, <-accepted)
	}
	for range 7 {
		if h := <-refused; h != "127.0.0.2" {
			t.Fatalf("refused %s", h)
		}
	}
	if n := l.Open("127.0.0.2"); n != 3 {
		t.Fatalf("127.0.0.2 holds %d connections, bound is 3", n)
	}
	// The refused ones see their connection closed, not a hang; the
	// kept ones get a byte, so that no read waits for a deadline.
	for _, c := range kept {
		c.Write([]byte("k"))
	}
	closed := 0
	for _, c := range greedy {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed != 7 {
		t.Fatalf("%d of the 7 connections over the bound were closed", closed)
	}

	// Another address is served meanwhile.
	good := dialFrom(t, "127.0.0.1", addr)
	sc := <-accepted
	good.Write([]byte("x"))
	if _, err := io.ReadFull(sc, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if !closedByPeer(good) {
		t.Fatal("closing the accepted conn did not close the client's")
	}

	// Closing (twice) frees exactly one slot.
	kept[0].Close()
	kept[0].Close()
	if n := l.Open("127.0.0.2"); n != 2 {
		t.Fatalf("after one close 127.0.0.2 holds %d, want 2", n)
	}
	dialFrom(t, "127.0.0.2", addr)
	(<-accepted).Close()
	if n := l.Open("127.0.0.1"); n != 0 {
		t.Fatalf("127.0.0.1 still holds %d", n)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
