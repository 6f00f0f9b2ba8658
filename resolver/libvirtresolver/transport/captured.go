package transport

import (
	"errors"
	"net"
	"sync"
)

// ErrAborted is what a Captured's Dial returns after Abort.
var ErrAborted = errors.New("dial aborted")

// Captured is a Dialer that keeps the conn it dialled, so that its owner
// can reach it under the client that dialled (go-libvirt's socket): set
// deadlines on it, or Abort it. A typical use ends a blocking connect when
// a context does, without a goroutine:
//
//	d := &transport.Captured{Dialer: u.Dialer}
//	stop := context.AfterFunc(ctx, d.Abort)
//	err := l.ConnectToURI(…) // fails once ctx ends
//	if !stop() { … ctx ended … }
type Captured struct {
	Dialer Dialer

	mu      sync.Mutex
	conn    net.Conn
	aborted bool
}

// Dial implements Dialer. After Abort it fails with ErrAborted; a dial
// that Abort overtook is closed.
func (d *Captured) Dial() (net.Conn, error) {
	if d.isAborted() {
		return nil, ErrAborted
	}
	c, err := d.Dialer.Dial()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.aborted {
		c.Close()
		return nil, ErrAborted
	}
	d.conn = c
	return c, nil
}

// Conn returns the conn dialled last, or nil.
func (d *Captured) Conn() net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conn
}

// Abort closes the conn, if one was dialled, and fails later dials.
func (d *Captured) Abort() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.aborted = true
	if d.conn != nil {
		d.conn.Close()
	}
}

func (d *Captured) isAborted() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.aborted
}
