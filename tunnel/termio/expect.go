package termio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Step is one step of a Script: wait until the console's output matches
// Expect (if set), then send Send (if set).
type Step struct {
	Expect *regexp.Regexp
	Send   []byte
}

// DefaultWindow is Script.Window's default: how much of the console's
// output, since the previous match, an expect is matched against.
const DefaultWindow = 64 << 10

// tailSize is how much of the last output a TimeoutError shows at most.
const tailSize = 2 << 10

// tailLines is how many of the last output's lines a TimeoutError shows.
const tailLines = 10

// Script runs Steps on a console connection, in order, as expect(1)
// does: each Expect waits, for up to Timeout, until the output since the
// previous match matches it (the last Window bytes of it, so that memory
// stays bounded however much the console prints). Everything the console
// prints is copied to Out as it arrives. A script survives a reconnect:
// Run again with a new connection continues at the step it was at, and
// the current expect's deadline stays where it was.
type Script struct {
	Steps []Step
	Out   io.Writer
	// Timeout is how long each expect may wait; zero means no limit.
	Timeout time.Duration
	// Drain, when the last step sends, is how long the console may stay
	// silent afterwards before Run returns (its answer is copied to Out);
	// zero means DefaultDrain.
	Drain time.Duration
	// Window bounds the output an expect is matched against; zero means
	// DefaultWindow.
	Window int

	step     int       // the next step
	deadline time.Time // of the expect at step, once it started
	started  time.Time
	window   []byte // output since the previous match, at most Window bytes
	tail     []byte // the last tailSize bytes of output
	buf      []byte
}

// TimeoutError is an expect that did not match in time.
type TimeoutError struct {
	Pattern string
	N, Of   int // which expect of how many (from 1)
	Waited  time.Duration
	// Tail is the end of the console's last output, made printable (see
	// Printable): at most its last 10 lines or 2 KiB.
	Tail string
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("timed out after %v waiting for --expect %q (%d of %d); raise --timeout if the console is slow",
		e.Waited.Round(100*time.Millisecond), e.Pattern, e.N, e.Of)
}

// ErrConsoleClosed is returned by Script.Run when the console closed
// before the script ended.
var ErrConsoleClosed = errors.New("the console closed before the script ended")

// Done reports whether every step has run.
func (s *Script) Done() bool { return s.step >= len(s.Steps) }

func (s *Script) windowSize() int {
	if s.Window > 0 {
		return s.Window
	}
	return DefaultWindow
}

// Run runs the remaining steps on conn and closes it. It returns nil once
// the last step has run (and, if it sent, the console has been drained),
// a *TimeoutError, ctx.Err(), ErrConsoleClosed, or the connection's error
// (the caller may Run again on a new connection).
func (s *Script) Run(ctx context.Context, conn net.Conn) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if s.buf == nil {
		s.buf = make([]byte, 32<<10)
		s.window = make([]byte, 0, s.windowSize())
		s.tail = make([]byte, 0, tailSize)
	}
	err := s.run(conn)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (s *Script) run(conn net.Conn) error {
	sent := false
	for ; s.step < len(s.Steps); s.step++ {
		st := s.Steps[s.step]
		if st.Expect != nil {
			if err := s.expect(conn, st.Expect); err != nil {
				return err
			}
		}
		sent = false
		if len(st.Send) > 0 {
			if _, err := conn.Write(st.Send); err != nil {
				return err
			}
			sent = true
		}
	}
	if sent {
		return s.drain(conn)
	}
	return nil
}

// expect reads conn until the window matches re, then drops the window
// up to the end of the match.
func (s *Script) expect(conn net.Conn, re *regexp.Regexp) error {
	if s.deadline.IsZero() {
		s.started = time.Now()
		if s.Timeout > 0 {
			s.deadline = s.started.Add(s.Timeout)
		} else {
			s.deadline = time.Now().Add(100 * 365 * 24 * time.Hour)
		}
	}
	for !re.Match(s.window) { // Match does not allocate; FindIndex below does, once
		conn.SetReadDeadline(s.deadline)
		n, err := conn.Read(s.buf)
		if n > 0 {
			if err := s.output(s.buf[:n]); err != nil {
				return err
			}
		}
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(s.deadline):
				return s.timeout(re)
			case errors.Is(err, io.EOF):
				return ErrConsoleClosed
			}
			return err
		}
	}
	loc := re.FindIndex(s.window)
	s.window = s.window[:copy(s.window, s.window[loc[1]:])]
	s.deadline = time.Time{}
	conn.SetReadDeadline(time.Time{})
	return nil
}

// output copies p to Out and keeps it in the window and the tail.
func (s *Script) output(p []byte) error {
	if s.Out != nil {
		if _, err := s.Out.Write(p); err != nil {
			return err
		}
	}
	s.window = keepLast(s.window, p, s.windowSize())
	s.tail = keepLast(s.tail, p, tailSize)
	return nil
}

// keepLast appends p to b, keeping only the last max bytes, within b's
// capacity (at least max) so that nothing is allocated.
func keepLast(b, p []byte, max int) []byte {
	if len(p) >= max {
		return append(b[:0], p[len(p)-max:]...)
	}
	if over := len(b) + len(p) - max; over > 0 {
		b = b[:copy(b, b[over:])]
	}
	return append(b, p...)
}

func (s *Script) timeout(re *regexp.Regexp) error {
	n, of := 0, 0
	for i, st := range s.Steps {
		if st.Expect != nil {
			of++
			if i <= s.step {
				n++
			}
		}
	}
	return &TimeoutError{Pattern: re.String(), N: n, Of: of, Waited: time.Since(s.started), Tail: Tail(s.tail)}
}

// drain copies what the console still sends until it has been silent
// for Drain.
func (s *Script) drain(conn net.Conn) error {
	quiet := s.Drain
	if quiet <= 0 {
		quiet = DefaultDrain
	}
	for {
		conn.SetReadDeadline(time.Now().Add(quiet))
		n, err := conn.Read(s.buf)
		if n > 0 {
			if err := s.output(s.buf[:n]); err != nil {
				return err
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// Tail returns the last lines (up to 10) of console output b, made
// printable.
func Tail(b []byte) string {
	text := Printable(b)
	text = strings.TrimRight(text, "\n")
	lines := strings.Split(text, "\n")
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	return strings.Join(lines, "\n")
}

// csi matches an ANSI control sequence (ESC [ … final byte) or a
// two-byte escape sequence.
var csi = regexp.MustCompile("\x1b(\\[[0-?]*[ -/]*[@-~]|[0-Z\\\\-~])")

// Printable makes console output safe to print on a terminal: escape
// sequences are dropped, carriage returns too (a line ends at "\n"),
// other control characters and invalid UTF-8 are spelled as Go escapes
// (\x07).
func Printable(b []byte) string {
	b = csi.ReplaceAll(b, nil)
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		switch {
		case r == '\r':
		case r == '\n' || r == '\t':
			sb.WriteRune(r)
		case r == utf8.RuneError && size == 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
			q := strconv.QuoteToASCII(string(b[:size]))
			sb.WriteString(q[1 : len(q)-1])
		default:
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

// ParseSend reads the text of --send, with C-style escapes: \n, \r, \t,
// \e (ESC), \a, \b, \0, \\, and \xNN (a byte in hex). Anything else after
// a backslash is an error.
func ParseSend(s string) ([]byte, error) {
	var out bytes.Buffer
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			return nil, fmt.Errorf("--send %q: a lone backslash at the end; write \\\\ for one", s)
		}
		switch s[i] {
		case 'n':
			out.WriteByte('\n')
		case 'r':
			out.WriteByte('\r')
		case 't':
			out.WriteByte('\t')
		case 'e':
			out.WriteByte(0x1b)
		case 'a':
			out.WriteByte(0x07)
		case 'b':
			out.WriteByte(0x08)
		case '0':
			out.WriteByte(0)
		case '\\':
			out.WriteByte('\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("--send %q: \\x wants two hex digits, e.g. \\x03 for Ctrl+C", s)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("--send %q: \\x wants two hex digits, e.g. \\x03 for Ctrl+C", s)
			}
			out.WriteByte(byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("--send %q: unknown escape \\%c; known: \\n \\r \\t \\e \\a \\b \\0 \\\\ \\xNN", s, s[i])
		}
	}
	return out.Bytes(), nil
}
