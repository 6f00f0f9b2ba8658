//go:build !linux

package sockread

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// ErrIdle is never returned: see Reader.
var ErrIdle = errors.New("sockread: socket idle")

// Reader: elsewhere than on Linux, sockets are read with Read, holding a
// buffer while they wait.
type Reader struct{}

// New returns nil: see Reader.
func New(net.Conn) *Reader { return nil }

// ReadLazy is never called: New returns no Reader.
func (*Reader) ReadLazy(func() []byte, func()) ([]byte, int, error) { panic("unreachable") }

// SetIdle is never called: New returns no Reader.
func (*Reader) SetIdle(time.Duration) {}

// RawConn is never called: New returns no Reader.
func (*Reader) RawConn() syscall.RawConn { return nil }

// ParkableSocket is never called: New returns no Reader.
func (s *Reader) ParkableSocket() *Reader { return s }
