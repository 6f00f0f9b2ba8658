package libvirtfake

import (
	"context"
	"sync"

	libvirt "github.com/digitalocean/go-libvirt"
)

// subscription is one event channel of a connection. Events queue without
// bound, so that raising one never blocks the hypervisor; a forwarder
// goroutine, which the connection's Disconnect waits for, hands them on.
type subscription struct {
	id   libvirt.DomainEventID
	mu   sync.Mutex
	q    []any
	wake chan struct{} // capacity 1: something was queued
}

func (s *subscription) push(ev any) {
	s.mu.Lock()
	s.q = append(s.q, ev)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *subscription) pop() (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.q) == 0 {
		return nil, false
	}
	ev := s.q[0]
	s.q = s.q[1:]
	return ev, true
}

// LifecycleEvents implements libvirtapi.Libvirt.
func (c *Conn) LifecycleEvents(ctx context.Context) (<-chan libvirt.DomainEventLifecycleMsg, error) {
	s, err := c.subscribe(libvirt.DomainEventIDLifecycle)
	if err != nil {
		return nil, err
	}
	out := make(chan libvirt.DomainEventLifecycleMsg)
	go forward(ctx, c, s, out)
	return out, nil
}

// SubscribeEvents implements libvirtapi.Libvirt for the metadata-change
// and device events; dom is not looked at.
func (c *Conn) SubscribeEvents(ctx context.Context, id libvirt.DomainEventID, _ libvirt.OptDomain) (<-chan any, error) {
	s, err := c.subscribe(id)
	if err != nil {
		return nil, err
	}
	out := make(chan any)
	go forward(ctx, c, s, out)
	return out, nil
}

// subscribe registers a subscription whose forwarder the caller starts.
func (c *Conn) subscribe(id libvirt.DomainEventID) (*subscription, error) {
	s := &subscription{id: id, wake: make(chan struct{}, 1)}
	err := c.call("SubscribeEvents", func(*Hypervisor) error {
		c.subs = append(c.subs, s)
		c.wg.Add(1) // before Disconnect can close c: both hold h.mu
		return nil
	})
	return s, err
}

// forward hands s's events to out until ctx ends or the connection
// closes; then it closes out, as go-libvirt does.
func forward[T any](ctx context.Context, c *Conn, s *subscription, out chan<- T) {
	defer c.wg.Done()
	defer close(out)
	for {
		ev, ok := s.pop()
		if !ok {
			select {
			case <-s.wake:
				continue
			case <-c.closed:
				return
			case <-ctx.Done():
				return
			}
		}
		select {
		case out <- ev.(T):
		case <-c.closed:
			return
		case <-ctx.Done():
			return
		}
	}
}

// emit queues an event for every subscriber to id. Callers hold h.mu.
func (h *Hypervisor) emit(id libvirt.DomainEventID, ev any) {
	if h.quiet {
		return
	}
	for c := range h.conns {
		for _, s := range c.subs {
			if s.id == id {
				s.push(ev)
			}
		}
	}
}

// lifecycle emits a lifecycle event of d. Callers hold h.mu.
func (h *Hypervisor) lifecycle(d *domain, ev libvirt.DomainEventType) {
	h.emit(libvirt.DomainEventIDLifecycle, libvirt.DomainEventLifecycleMsg{Dom: d.ref(), Event: int32(ev)})
}
