// Package serial is the protocol layer of byte-stream consoles (serial
// and console chardevs). There is nothing to negotiate, but QEMU's TLS
// chardevs need care with how bytes are framed toward them.
//
// Observed with QEMU 7.2 (tests in this package reproduce it): a TLS
// socket chardev hands its frontend only as many bytes as the frontend
// accepts at once — one for the monitor and for a 16550 UART whose FIFO
// is off — and the rest of the decrypted TLS record waits in the TLS
// library's buffer until more bytes arrive on the socket, because QEMU
// polls only the socket. A pasted line stalls after its first byte. Each
// byte in its own TLS record is always consumed: so toward a TLS chardev
// the Handshaker writes one byte per record (about 22 bytes of framing
// per byte). The records of one Write may go in one TCP write: QEMU's TLS
// library reads a record at a time and the rest stay readable on the
// socket (TestCoalescedByteRecords); one write per record cost about
// 2.7 s of CPU per MiB pasted, together about 0.2 s. Even so a paste is
// the costliest direction a session has, so it is also rate-limited
// (Handshaker.PasteRate): one viewer pasting without end cannot take a
// core from everyone else's sessions.
package serial

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// DefaultPasteRate is the bytes per second a session may write toward a
// TLS chardev. At about 0.2 s of CPU per MiB it costs at most some 5% of a
// core, and a 16550 UART at 115200 baud takes 11.5 KB/s anyway; a 1 MiB
// paste takes 4 s.
const DefaultPasteRate = 256 << 10

// pasteBurst is how many bytes go at once before the rate applies: a
// typed line or a short paste is never delayed.
const pasteBurst = 64 << 10

// Handshaker is the protocols.Handshaker of serial and console targets.
type Handshaker struct {
	// PasteRate bounds the bytes per second written toward a TLS chardev
	// (after a burst of 64 KiB). Zero means DefaultPasteRate; negative,
	// no bound. Plain chardevs are not limited: their bytes cost nothing.
	PasteRate int
}

// Server returns the QEMU conn, wrapped to write one byte per TLS record,
// at most PasteRate bytes a second, when the target speaks TLS.
func (h Handshaker) Server(_ context.Context, server net.Conn, t protocols.Target) (net.Conn, protocols.Info, error) {
	if !t.TLSFromFirstByte() {
		return server, protocols.Info{}, nil
	}
	c := ByteRecords(server).(*byteRecords)
	switch {
	case h.PasteRate == 0:
		c.limit(DefaultPasteRate)
	case h.PasteRate > 0:
		c.limit(h.PasteRate)
	}
	return c, protocols.Info{Auth: "tls"}, nil
}

// Client returns both conns unchanged.
func (Handshaker) Client(_ context.Context, client, server net.Conn) (net.Conn, net.Conn, error) {
	return client, server, nil
}

// ByteRecords wraps a TLS conn so that every Write sends each byte in its
// own TLS record (crypto/tls sends one record per Write of up to a record's
// size). Reads, deadlines and CloseWrite pass through.
//
// When the conn below the TLS layer (c's NetConn, as *tls.Conn has) can
// gather writes — a method Gather(f func() error) error that sends what
// f writes in one write, as tunnel.DialTLS's conns have — the records of
// up to gatherBytes bytes go in one write.
func ByteRecords(c net.Conn) net.Conn {
	b := &byteRecords{Conn: c}
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		if g, ok := nc.NetConn().(interface{ Gather(func() error) error }); ok {
			b.gather = g.Gather
		}
	}
	return b
}

// gatherBytes bounds the pasted bytes per gathered write (each takes
// about 22 bytes of records, so some 22 KiB a write).
const gatherBytes = 1024

type byteRecords struct {
	net.Conn
	gather func(func() error) error // nil: one write per record

	// With a rate (perByte > 0): a token bucket kept as the time at
	// which the bytes written so far are paid for (GCRA: writes are
	// sequential, so no lock); a timer reused by every wait (no
	// allocation per write); and closed, which ends a wait when the conn
	// is closed.
	perByte   time.Duration
	paidUntil time.Time
	timer     *time.Timer
	closed    chan struct{}
	closeOnce sync.Once
}

// limit bounds b's writes to perSecond bytes a second after a burst of
// pasteBurst bytes.
func (b *byteRecords) limit(perSecond int) {
	b.perByte = time.Second / time.Duration(perSecond)
	b.timer = time.NewTimer(0)
	<-b.timer.C
	b.closed = make(chan struct{})
}

// wait holds a write of n bytes (at most pasteBurst) until the rate
// allows it, or fails once the conn is closed.
func (b *byteRecords) wait(n int) error {
	if b.perByte == 0 {
		return nil
	}
	now := time.Now()
	if b.paidUntil.Before(now) {
		b.paidUntil = now
	}
	b.paidUntil = b.paidUntil.Add(time.Duration(n) * b.perByte)
	// The bucket holds pasteBurst bytes: wait for what exceeds it.
	d := b.paidUntil.Sub(now) - pasteBurst*b.perByte
	if d <= 0 {
		return nil
	}
	b.timer.Reset(d)
	select {
	case <-b.timer.C:
		return nil
	case <-b.closed:
		b.timer.Stop()
		return net.ErrClosed
	}
}

// Close closes the conn, ending a write waiting for the rate.
func (b *byteRecords) Close() error {
	if b.closed != nil {
		b.closeOnce.Do(func() { close(b.closed) })
	}
	return b.Conn.Close()
}

func (b *byteRecords) Write(p []byte) (int, error) {
	done := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), gatherBytes)]
		if err := b.wait(len(chunk)); err != nil {
			return done, err
		}
		if b.gather == nil {
			n, err := b.records(chunk)
			done += n
			if err != nil {
				return done, err
			}
			p = p[n:]
			continue
		}
		var n int
		err := b.gather(func() (err error) {
			n, err = b.records(chunk)
			return err
		})
		if err != nil {
			return done, err // the chunk's bytes may not have left
		}
		done += n
		p = p[n:]
	}
	return done, nil
}

// records writes each byte of p in its own record.
func (b *byteRecords) records(p []byte) (int, error) {
	for i := range p {
		if _, err := b.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// CloseWrite half-closes the wrapped conn when it can.
func (b *byteRecords) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
