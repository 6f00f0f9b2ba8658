//go:build !linux

package sockread

import "net"

// Reader: elsewhere than on Linux, sockets are read with Read, holding a
// buffer while they wait.
type Reader struct{}

// New returns nil: see Reader.
func New(net.Conn) *Reader { return nil }

// ReadLazy is never called: New returns no Reader.
func (*Reader) ReadLazy(func() []byte, func()) ([]byte, int, error) { panic("unreachable") }
