package tunnel

import "sync"

// Buffer sizes of a copy direction. Every direction owns a small buffer;
// it borrows a big one from bigPool only while its source keeps handing it
// more than the small buffer holds.
const (
	smallBufSize = 2 << 10
	bigBufSize   = 32 << 10
)

// bigPool holds *[bigBufSize]byte. Pointers, so Get and Put do not
// allocate.
var bigPool = sync.Pool{New: func() any { return new([bigBufSize]byte) }}

// copyBuf is the buffer state of one copy direction.
//
// Reads go to the small buffer first. A read that fills it means the source
// has bulk data waiting, so the next read takes a big buffer from bigPool,
// and keeps it while reads return more than the small buffer could have
// held. The first read that would have fit in the small buffer returns the
// big one to the pool: a busy stream runs on 32 KiB, an idle or interactive
// session blocks in Read holding only its 2 KiB.
//
// "Fits in the small buffer", not "did not fill the big one", is the
// release rule on purpose: a TLS source never returns more than one 16 KiB
// record per Read, and a websocket one stops at message and buffer
// boundaries, so reads from a busy TLS or websocket stream are nearly
// always short of 32 KiB.
type copyBuf struct {
	small [smallBufSize]byte
	big   *[bigBufSize]byte
}

// buf returns the buffer for the next read.
func (c *copyBuf) buf() []byte {
	if c.big != nil {
		return c.big[:]
	}
	return c.small[:]
}

// update adapts the buffer choice after a read of n bytes.
func (c *copyBuf) update(n int) {
	switch {
	case c.big == nil && n == smallBufSize:
		c.big = bigPool.Get().(*[bigBufSize]byte)
	case c.big != nil && n < bigBufSize:
		c.release()
	}
}

// release returns the big buffer, if any, to the pool.
func (c *copyBuf) release() {
	if c.big != nil {
		bigPool.Put(c.big)
		c.big = nil
	}
}
