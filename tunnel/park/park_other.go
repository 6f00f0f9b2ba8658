//go:build !linux

package park

import (
	"errors"
	"syscall"
)

// ErrClosed is Wait's error once the Poller is closed.
var ErrClosed = errors.New("park: poller closed")

// A Token names one Wait, for Cancel.
type Token uint64

// Poller: elsewhere than on Linux there is none; callers keep a
// goroutine per idle socket.
type Poller struct{}

// New returns an error: see Poller.
func New() (*Poller, error) { return nil, errors.New("park: not supported on this system") }

// Wait is never called: New returns no Poller.
func (*Poller) Wait(syscall.RawConn, func()) (Token, error) { return 0, ErrClosed }

// Cancel is never called: New returns no Poller.
func (*Poller) Cancel(Token) bool { return false }

// Close is never called: New returns no Poller.
func (*Poller) Close() error { return nil }
