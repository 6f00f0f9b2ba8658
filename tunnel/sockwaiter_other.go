//go:build !linux

package tunnel

import "syscall"

// newSockWaiter: elsewhere than on Linux, sockets are read holding a small
// buffer, as before readWaiter.
func newSockWaiter(syscall.Conn) readWaiter { return nil }
