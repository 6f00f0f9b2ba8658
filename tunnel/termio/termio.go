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

// Session joins In/Out to a console connection, or to one connection
// after another (reconnecting): In is read by one goroutine for the whole
// session (see Input), so what is typed outlives a connection.
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

	input *Input
}

// Input reads a reader in one goroutine for as long as a command runs and
// hands out what it reads one chunk at a time, with no allocation per
// chunk: the reader fills the next chunk only once the last one has been
// taken back (Next). The goroutine ends when the reader ends; on a
// terminal, whose read cannot be interrupted, that is when the process
// exits.
type Input struct {
	chunks chan []byte
	next   chan struct{}
	err    error // why the reader ended, if not io.EOF; set before chunks closes
	ended  bool  // Run saw C closed (Run's goroutine only)
}

// NewInput starts reading r.
func NewInput(r io.Reader) *Input {
	in := &Input{chunks: make(chan []byte), next: make(chan struct{})}
	go in.read(r)
	return in
}

func (in *Input) read(r io.Reader) {
	defer close(in.chunks)
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			in.chunks <- buf[:n]
			<-in.next
		}
		if err != nil {
			if err != io.EOF {
				in.err = err
			}
			return
		}
	}
}

// C delivers the chunks read, each valid until Next is called; it is
// closed when the reader ended (Err says why, nil for io.EOF).
func (in *Input) C() <-chan []byte { return in.chunks }

// Next gives the last chunk received from C back to the reader.
func (in *Input) Next() { in.next <- struct{}{} }

// Err is why the input ended (nil for its end), once C is closed.
func (in *Input) Err() error { return in.err }

func (s *Session) in() *Input {
	if s.input == nil {
		s.input = NewInput(s.In)
	}
	return s.input
}

// InputEnded reports whether In has ended (and Run drained the console).
func (s *Session) InputEnded() bool { return s.input != nil && s.input.ended }

// Run copies In to conn and conn to Out until the user types the escape
// key (ErrEscaped), the console closes (nil), In ends and the console has
// been drained (nil), ctx ends (ctx.Err()), or an error occurs. It closes
// conn before returning. Run may be called again with a new connection
// (a reconnect) unless In ended: what In holds then goes to the new one.
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

	in := s.in()
	outDone := make(chan error, 1)
	drained := make(chan struct{})
	chunks := in.C()
	if in.ended {
		chunks = nil
		close(drained)
		conn.SetReadDeadline(time.Now().Add(s.quiet()))
	}
	go func() { outDone <- s.pumpOut(conn, drained) }()
	// end closes conn and waits for pumpOut, which owns the reads.
	end := func(err error) error {
		conn.Close()
		<-outDone
		if ctx.Err() != nil && !errors.Is(err, ErrEscaped) {
			return ctx.Err()
		}
		return err
	}

	for {
		select {
		case chunk, ok := <-chunks:
			if !ok {
				if err := in.Err(); err != nil {
					return end(err)
				}
				// In ended: read what the console still sends until it
				// closes or goes quiet.
				in.ended = true
				chunks = nil
				close(drained)
				conn.SetReadDeadline(time.Now().Add(s.quiet()))
				continue
			}
			esc := s.escapeIndex(chunk)
			if esc >= 0 {
				chunk = chunk[:esc]
			}
			var werr error
			if len(chunk) > 0 {
				_, werr = conn.Write(chunk)
			}
			in.Next()
			switch {
			case esc >= 0:
				return end(ErrEscaped)
			case werr != nil:
				return end(werr)
			}
		case err := <-outDone:
			outDone <- err // for end, which waits for it
			if ctx.Err() != nil {
				return end(ctx.Err())
			}
			return end(err)
		}
	}
}

// escapeIndex returns the index of the escape byte in chunk, or -1.
func (s *Session) escapeIndex(chunk []byte) int {
	if s.Escape < 0 {
		return -1
	}
	for i, b := range chunk {
		if int(b) == s.Escape {
			return i
		}
	}
	return -1
}

// Wait waits for d between two connections (or until ctx ends: its
// error). With discard (a terminal), what is typed meanwhile is thrown
// away, but the escape key still ends the session (ErrEscaped); without,
// input is left for the next connection.
func (s *Session) Wait(ctx context.Context, d time.Duration, discard bool) error {
	t := time.NewTimer(d)
	defer t.Stop()
	var chunks <-chan []byte
	if discard {
		chunks = s.in().C()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		case chunk, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			esc := s.escapeIndex(chunk)
			s.input.Next()
			if esc >= 0 {
				return ErrEscaped
			}
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
