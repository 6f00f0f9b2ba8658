// Package forward runs a local listener for desktop viewers: every
// accepted connection is handed to its own handler (which opens one
// upstream connection for it), many at once, until the context ends.
package forward

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Handler serves one accepted connection and closes it. Its error ends
// Serve only in Once mode.
type Handler func(ctx context.Context, local net.Conn) error

// Forwarder accepts connections on Listener and runs Handler for each.
type Forwarder struct {
	Listener net.Listener
	Handler  Handler

	// Once stops accepting after the first connection and returns when
	// its handler does, with the handler's error.
	Once bool

	// MaxConns bounds concurrent connections (and so goroutines); zero
	// means 64. Connections beyond it wait in the listen backlog.
	MaxConns int
}

// Serve accepts until ctx ends (then it closes the listener, cancels the
// handlers' context and waits for them) and returns nil, or until the
// listener fails.
func (f *Forwarder) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { f.Listener.Close() })
	defer stop()

	max := f.MaxConns
	if max <= 0 {
		max = 64
	}
	sem := make(chan struct{}, max)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	for {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := f.Listener.Accept()
		if err != nil {
			<-sem
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if f.Once {
			f.Listener.Close()
			err := f.Handler(ctx, c)
			<-sem
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f.Handler(ctx, c)
		}()
	}
}
