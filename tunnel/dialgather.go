package tunnel

import (
	"net"
	"sync"
)

// gatherConn is the conn below the TLS layer of DialTLS: Gather lets the
// layer above hold writes (TLS records) and send them in one write.
//
// protocols/serial uses it toward QEMU's TLS chardevs, which need one
// byte per TLS record but take a paste's records fine when they arrive
// together; one write per record cost about 2.7 s of CPU per MiB.
//
// Writes are serialised by mu, held across the flush, so that a record
// written by another goroutine meanwhile (crypto/tls writes alerts and
// key updates on its own) goes after the held ones: records stay in the
// order crypto/tls numbered them.
type gatherConn struct {
	net.Conn
	mu        sync.Mutex
	gathering int // Gather calls in progress
	held      []byte
}

func (g *gatherConn) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gathering > 0 {
		g.held = append(g.held, p...)
		return len(p), nil
	}
	return g.Conn.Write(p)
}

// Gather runs f, holding what is written meanwhile, then writes it at
// once. It returns f's error, or else the write's.
func (g *gatherConn) Gather(f func() error) error {
	g.mu.Lock()
	g.gathering++
	g.mu.Unlock()
	err := f()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.gathering--; g.gathering > 0 {
		return err // the last one out flushes
	}
	held := g.held
	g.held = g.held[:0]
	if len(held) > 0 {
		if _, werr := g.Conn.Write(held); err == nil {
			err = werr
		}
	}
	return err
}
