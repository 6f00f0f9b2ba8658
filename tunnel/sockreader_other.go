//go:build !linux

package tunnel

import "net"

// sockReader: elsewhere than on Linux, sockets are read with Read,
// holding a small buffer while they wait.
type sockReader struct{}

func newSockReader(net.Conn) *sockReader { return nil }

func (*sockReader) ReadLazy(func() []byte, func()) ([]byte, int, error) { panic("unreachable") }
