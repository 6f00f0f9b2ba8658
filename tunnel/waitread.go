package tunnel

import (
	"net"

	"github.com/virtconsole/virtconsole/tunnel/sockread"
)

// LazyReader is a source that takes a buffer only once it has input and
// gives it back before it waits, so that an idle Join direction holds no
// buffer. take returns the buffer to read into (at least 256 bytes; Join
// gives its small or big one, the same until release), release gives it
// back; ReadLazy returns the buffer it read into, with n bytes of data
// at its front, and errors as Read would. A *wsconn.Conn is one.
type LazyReader interface {
	ReadLazy(take func() []byte, release func()) (buf []byte, n int, err error)
}

// LazyReaderFor returns how to read c lazily: c itself if it is a
// LazyReader, a reader of the socket for a stream socket (*net.TCPConn,
// a stream *net.UnixConn, read through its RawConn), nil otherwise (a
// *tls.Conn, which keeps record buffers of its own anyway: Join reads it
// holding its small buffer while Read waits). A conn type that wraps c
// (to watch its errors, as the proxy's console side does) passes ReadLazy
// on to what LazyReaderFor returned when it was made, so that Join can
// read through the wrapper lazily too.
func LazyReaderFor(c net.Conn) LazyReader {
	if l, ok := c.(LazyReader); ok {
		return l
	}
	if s := sockread.New(c); s != nil {
		return s
	}
	return nil
}

// chooseReaders decides, once at Join start so that the copy loop pays no
// type switch per read, how each direction reads: lazily when it can
// (LazyReaderFor), holding nothing while it waits, else with Read.
func (j *joiner) chooseReaders() {
	for i, c := range j.conns {
		if j.lazies[i] = LazyReaderFor(c); j.lazies[i] == nil {
			continue
		}
		bufs := &j.bufs[i]
		j.takes[i] = bufs.buf
		j.gives[i] = func() {
			bufs.releaseAll()
			if testHookWaiting != nil {
				testHookWaiting(bufs)
			}
		}
	}
}

// testHookWaiting, if set, is called with a direction's buffers as it
// starts waiting for its source to have data (a LazyReader's release).
var testHookWaiting func(*copyBuf)
