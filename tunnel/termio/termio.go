// Package termio connects a terminal (or any reader/writer pair) to a
// console connection, with an escape key that ends the session. Putting
// the terminal into raw mode is the caller's job: this package only moves
// bytes, so it is tested with pipes.
package termio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// ErrEscaped is returned by Run when the user typed the escape key.
var ErrEscaped = errors.New("escape key typed")

// ParseEscape parses an escape key spelled "^]" (Ctrl+]), "^A" … "^_",
// or "none" (no escape key: returns -1).
func ParseEscape(s string) (int, error) {
	if strings.EqualFold(s, "none") {
		return -1, nil
	}
	if len(s) == 2 && s[0] == '^' {
		c := s[1]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c >= '@' && c <= '_' {
			return int(c & 0x1f), nil
		}
	}
	return 0, fmt.Errorf("escape key %q: want ^X for a control character (e.g. ^] or ^A) or none", s)
}

// FormatEscape spells an escape byte the way ParseEscape reads it.
func FormatEscape(b int) string {
	if b < 0 {
		return "none"
	}
	return "^" + string(rune(b|0x40))
}

// DefaultDrain is Session.Drain's default: long enough for a shell to
// echo a command and start answering, short enough for scripts.
const DefaultDrain = time.Second

// Session joins In/Out to a console connection.
type Session struct {
	In  io.Reader
	Out io.Writer
	// Escape is the byte that ends the session, or -1 for none. Every
	// byte read from In is checked, not only the first of a read.
	Escape int
	// Drain is how long the console may stay silent, after In ended,
	// before Run ends the session; every byte the console sends restarts
	// it. Zero means DefaultDrain.
	Drain time.Duration
}

// Run copies In to conn and conn to Out until the user types the escape
// key (ErrEscaped), the console closes (nil), In ends and the console has
// been drained (nil), ctx ends (ctx.Err()), or an error occurs. It closes
// conn before returning.
//
// When In ends, Run does not pass the end on as a half-close: QEMU's
// socket chardev (and so a proxy in front of it) takes EOF from its client
// as a disconnect and drops the guest's answer to what was just typed.
// Instead the write side stays open and Run reads the console until it has
// been silent for Drain.
func (s *Session) Run(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	inDone := make(chan error, 1)
	go func() { inDone <- s.pumpIn(conn) }()

	outDone := make(chan error, 1)
	drained := make(chan struct{})
	go func() { outDone <- s.pumpOut(conn, drained) }()

	for {
		select {
		case err := <-inDone:
			if errors.Is(err, ErrEscaped) {
				return ErrEscaped
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
			// In ended: read what the console still sends until it
			// closes or goes quiet.
			inDone = nil
			close(drained)
			conn.SetReadDeadline(time.Now().Add(s.quiet()))
		case err := <-outDone:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
}

func (s *Session) pumpIn(conn net.Conn) error {
	buf := make([]byte, 4096)
	for {
		n, err := s.In.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			esc := -1
			if s.Escape >= 0 {
				for i, b := range chunk {
					if int(b) == s.Escape {
						esc = i
						break
					}
				}
			}
			if esc >= 0 {
				chunk = chunk[:esc]
			}
			if len(chunk) > 0 {
				if _, werr := conn.Write(chunk); werr != nil {
					return werr
				}
			}
			if esc >= 0 {
				return ErrEscaped
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *Session) pumpOut(conn net.Conn, drained <-chan struct{}) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := s.Out.Write(buf[:n]); werr != nil {
				return werr
			}
			if isClosed(drained) {
				// After In ended, the console may keep talking, but
				// each silence may last only so long.
				conn.SetReadDeadline(time.Now().Add(s.quiet()))
			}
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && isClosed(drained) {
				return nil // drained: the console went quiet
			}
			return err
		}
	}
}

func (s *Session) quiet() time.Duration {
	if s.Drain > 0 {
		return s.Drain
	}
	return DefaultDrain
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
