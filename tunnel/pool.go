package tunnel

import "sync"

// Buffer sizes of a copy direction. A direction borrows a small buffer
// from smallPool while it reads (for good, if its source cannot be read
// lazily: see LazyReader), and a big one from bigPool only while its
// source keeps filling it.
const (
	smallBufSize = 2 << 10
	bigBufSize   = 32 << 10

	// fullSlack is how far short of smallBufSize a read may fall and
	// still count as filling it: a websocket source reads frames through
	// a buffer of smallBufSize, so its first read of a message returns
	// that buffer less the frame's header (2 to 14 bytes). Counting it
	// full saves a read and a write per message: measured with strace on
	// a 32 KiB message, up toward TCP, 2 reads and 2 writes (2040 and
	// 30728 bytes) instead of 3 and 3 (2040, 2048 and 28680).
	fullSlack = 64

	// bigSlack is the same for the big buffer: a websocket source decodes
	// frames in the buffer it is given, so a read that filled the big
	// buffer returns it less the headers of the frames that began in it
	// (8 bytes each for a client's message of 126 to 65535 bytes). Counted
	// as short, each such read would send the direction back to the small
	// buffer: measured, 32 KiB messages up alternated 32 KiB and 2 KiB
	// reads, and ran at 0.9x the throughput.
	bigSlack = 1 << 10
)

// bigPool holds *[bigBufSize]byte, smallPool *[smallBufSize]byte.
// Pointers, so Get and Put do not allocate.
var (
	bigPool   = sync.Pool{New: func() any { return new([bigBufSize]byte) }}
	smallPool = sync.Pool{New: func() any { return new([smallBufSize]byte) }}
)

// copyBuf is the buffer state of one copy direction.
//
// Reads go to the small buffer first. A read that fills it (give or take
// a websocket frame header: fullSlack) means the source has bulk data
// waiting, so the next read takes a big buffer from bigPool, and keeps it
// while reads keep filling it. The first short read gives it back: the
// source is drained for now. So a busy stream runs on 32 KiB, and an idle
// or interactive session waits holding at most its 2 KiB: none when its
// source is read lazily, as the read that finds nothing then gives the
// small buffer back too (releaseAll) before it waits. (The read that
// follows a short one may of course return bulk again; it fills the small
// buffer and the big one comes back: one extra 2 KiB read and write.)
//
// Layered sources read short more often: a TLS conn returns at most one
// 16 KiB record per Read, so a bulk TLS stream alternates 2 KiB and
// 14 KiB reads. A websocket decodes its frames in the buffer it is
// given (package wsconn), so its reads are as long as the transport's,
// less the frame headers (fullSlack, bigSlack).
//
// Keeping the big buffer until a read returns less than a low threshold
// (say 1 KiB) instead would save that extra read and write, but for a
// source that is not read lazily a bulk burst that ends on a larger read
// then leaves 32 KiB with the direction while the session idles: measured,
// 110 KiB instead of 77 KiB per idle session after bulk traffic (both ends
// of a TLS websocket session and its TCP leg).
type copyBuf struct {
	small *[smallBufSize]byte // nil while the direction waits holding nothing
	big   *[bigBufSize]byte   // nil unless bulk (or bulk and waiting)
	bulk  bool                // the next read goes to a big buffer
}

// buf returns the buffer for the next read.
func (c *copyBuf) buf() []byte {
	if c.bulk {
		if c.big == nil {
			c.big = bigPool.Get().(*[bigBufSize]byte)
		}
		return c.big[:]
	}
	if c.small == nil {
		c.small = smallPool.Get().(*[smallBufSize]byte)
	}
	return c.small[:]
}

// update adapts the buffer choice after a read of n bytes.
func (c *copyBuf) update(n int) {
	switch {
	case !c.bulk && n > smallBufSize-fullSlack:
		c.bulk = true
		c.big = bigPool.Get().(*[bigBufSize]byte)
	case c.bulk && n < bigBufSize-bigSlack:
		c.bulk = false
		c.release()
	}
}

// releaseAll returns both buffers, if held, to their pools, to wait
// holding nothing; the choice of the next one (bulk) stays.
func (c *copyBuf) releaseAll() {
	c.release()
	if c.small != nil {
		smallPool.Put(c.small)
		c.small = nil
	}
}

// release returns the big buffer, if any, to the pool.
func (c *copyBuf) release() {
	if c.big != nil {
		bigPool.Put(c.big)
		c.big = nil
	}
}
