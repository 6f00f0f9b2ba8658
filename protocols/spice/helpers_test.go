package spice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every link stage in the tests.
const testTimeout = 15 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// memConn is a net.Conn whose reads come from a fixed byte slice (then
// io.EOF) and whose writes are kept. It records the largest read asked
// for, to check that no length from the wire sizes a read.
type memConn struct {
	r       *bytes.Reader
	w       bytes.Buffer
	maxRead int
	chunk   int // if > 0, at most this many bytes per Read
}

func newMemConn(b []byte) *memConn { return &memConn{r: bytes.NewReader(b)} }

func (c *memConn) Read(p []byte) (int, error) {
	c.maxRead = max(c.maxRead, len(p))
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *memConn) Write(p []byte) (int, error)        { return c.w.Write(p) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// capWords builds a caps word list with the given bits set.
func capWords(bits ...int) []uint32 {
	var w []uint32
	for _, b := range bits {
		for len(w) <= b/32 {
			w = append(w, 0)
		}
		w[b/32] |= 1 << (b % 32)
	}
	return w
}

// viewerCaps are the common caps remote-viewer (spice-gtk) sets.
var viewerCaps = capWords(CommonCapAuthSelection, CommonCapAuthSpice, CommonCapMiniHeader)

// qemuReplyCaps are the common caps QEMU 7.2 sets in a link reply.
var qemuReplyCaps = capWords(CommonCapAuthSelection, CommonCapAuthSpice, CommonCapMiniHeader)

// testKey is an RSA-1024 key for fake servers.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, TicketKeyBits)
	if err != nil {
		panic(err)
	}
	return k
})

// okReply is a link reply as QEMU sends it, with key's public half.
func okReply(t testing.TB, key *rsa.PrivateKey, common []uint32, channel ...uint32) []byte {
	t.Helper()
	r := LinkReply{CommonCaps: common, ChannelCaps: channel}
	der, err := marshalPub(key)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.PubKey[:], der)
	return r.Marshal()
}
