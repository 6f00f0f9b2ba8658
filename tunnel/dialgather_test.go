package tunnel

import (
	"bytes"
	"context"
	"crypto/tls"
	"sync"
	"testing"
)

// TestDialTLSGather: records held by Gather go out in one write and in
// crypto/tls's order, also while another goroutine writes records
// directly: the echo server decrypts every one (a reordered record would
// fail its MAC and end the connection).
func TestDialTLSGather(t *testing.T) {
	srv, pool := tlsServer(t)
	c, err := DialTLS(context.Background(), nil, srv.Addr().String(), clientConfig(pool))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	g, ok := c.(*tls.Conn).NetConn().(interface{ Gather(func() error) error })
	if !ok {
		t.Fatalf("the conn below TLS is %T, without Gather", c.(*tls.Conn).NetConn())
	}
	const rounds, per = 50, 40
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range rounds {
			g.Gather(func() error {
				for range per {
					if _, err := c.Write([]byte{'a'}); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}()
	go func() {
		defer wg.Done()
		for range rounds {
			c.Write(bytes.Repeat([]byte{'b'}, per))
		}
	}()
	echo := readN(c, 2*rounds*per)
	wg.Wait()
	got := recv(t, echo, "the echo")
	if a, b := bytes.Count(got, []byte{'a'}), bytes.Count(got, []byte{'b'}); a != rounds*per || b != rounds*per {
		t.Fatalf("echoed %d a and %d b, want %d each", a, b, rounds*per)
	}
}
