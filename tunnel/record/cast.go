package record

import (
	"crypto/sha256"
	"encoding/json"
	"hash"
	"os"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Asciicast v2 (https://docs.asciinema.org/manual/asciicast/v2/): a
// header object on the first line, then one event per line, an array of
// the time in seconds since the start, the event's code and its data.
const (
	castVersion = 2       // the header's "version"
	eventOutput = "o"     // data the console wrote
	eventInput  = "i"     // data the viewer typed (with --record-input)
	eventMarker = "m"     // a marker's label
	castWidth   = 80      // the serial websocket reports no terminal size:
	castHeight  = 24      // the header says 80x24
	castTerm    = "xterm" // the header's env.TERM
)

// Bounds of a recording's memory: events carry at most maxEventData
// bytes of data (a longer chunk is several events at one time), and the
// lines wait in a buffer written out when it holds flushBytes, or after
// the flush interval.
const (
	maxEventData = 16 << 10
	flushBytes   = 32 << 10
)

// Header is an asciicast v2 header with our identity fields under
// "virtconsole".
type Header struct {
	Version     int               `json:"version"`
	Width       int               `json:"width"`
	Height      int               `json:"height"`
	Timestamp   int64             `json:"timestamp"` // Unix seconds of the start
	Title       string            `json:"title,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	Virtconsole *Identity         `json:"virtconsole,omitempty"`
}

// castWriter writes one asciicast file. Lines are assembled in out and
// written whole (one write per flush, at line boundaries), so that a
// proxy killed at any moment leaves a file of complete lines (a torn
// line needs the machine itself to stop mid-write, which readers
// tolerate: they stop at the last complete line). Its methods are safe
// for concurrent use.
type castWriter struct {
	mu      sync.Mutex
	f       *os.File
	sum     hash.Hash // of every byte written to f
	size    int64
	start   time.Time
	out     []byte    // complete lines not written yet
	partial [2][]byte // an incomplete UTF-8 sequence at the end of the last output (0) or input (1)
	timer   *time.Timer
	armed   bool // timer is set
	every   time.Duration
	err     error   // the first write error: sticky
	last    float64 // the time of the last event

	held     bool // the header is not written yet: nothing is
	fallback any  // the header to write if release does not come
}

// maxHeld bounds what waits for a held header.
const maxHeld = 1 << 20

// release writes the header h (before all that waits for it) and what
// follows; nothing when it was written already.
func (c *castWriter) release(h any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return c.err
	}
	return c.releaseLocked(h)
}

func (c *castWriter) releaseLocked(h any) error {
	line, err := json.Marshal(h)
	if err != nil {
		return err
	}
	c.out = append(append(append(make([]byte, 0, len(line)+1+len(c.out)+flushBytes), line...), '\n'), c.out...)
	c.held, c.fallback = false, nil
	return c.flushLocked()
}

// newCastWriter writes h as the first line (an asciicast Header, or a VNC
// recording's RFBHeader). With hold, nothing is written until release
// gives the header (a VNC recording's waits for QEMU's ServerInit); h is
// the one written if release has not come by close, or once maxHeld
// bytes wait.
func newCastWriter(f *os.File, start time.Time, h any, hold bool, every time.Duration) (*castWriter, error) {
	c := &castWriter{f: f, sum: sha256.New(), start: start, out: make([]byte, 0, flushBytes+1024), every: every}
	if hold {
		c.held, c.fallback = true, h
	} else if err := c.releaseLocked(h); err != nil {
		return nil, err
	}
	c.timer = time.AfterFunc(time.Hour, c.tick)
	c.timer.Stop()
	return c, nil
}

// tick is the flush timer's: output waits at most the flush interval.
// It owns nothing: one that runs after close (Stop raced with it) finds
// nothing to write.
func (c *castWriter) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	c.flushLocked()
}

// event appends one event of code with data (split into events of at
// most maxEventData). dir is 0 for output, 1 for input, -1 for a marker:
// output and input keep an incomplete UTF-8 sequence at a chunk's end
// for the next chunk, so that a rune split between reads stays whole.
func (c *castWriter) event(code string, dir int, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	t := c.stamp()
	if dir < 0 {
		c.line(t, code, data)
		return c.wrote()
	}
	if pend := c.partial[dir]; len(pend) > 0 {
		for len(data) > 0 && len(pend) < utf8.UTFMax && !utf8.FullRune(pend) {
			pend = append(pend, data[0])
			data = data[1:]
		}
		if !utf8.FullRune(pend) && len(pend) < utf8.UTFMax {
			c.partial[dir] = pend // still incomplete: wait for more
			return nil
		}
		c.line(t, code, pend) // a rune, or an invalid sequence (U+FFFD)
		c.partial[dir] = pend[:0]
	}
	if k := incompleteTail(data); k > 0 {
		c.partial[dir] = append(c.partial[dir][:0], data[len(data)-k:]...)
		data = data[:len(data)-k]
	}
	for len(data) > 0 {
		n := min(len(data), maxEventData)
		for n < len(data) && n > 1 && !utf8.RuneStart(data[n]) {
			n-- // split between runes
		}
		c.line(t, code, data[:n])
		data = data[n:]
		if len(c.out) >= flushBytes && len(data) > 0 {
			if err := c.flushLocked(); err != nil { // out stays bounded
				return err
			}
		}
	}
	return c.wrote()
}

// stamp is the time of an event now, in seconds since the start: never
// before the last one.
func (c *castWriter) stamp() float64 {
	c.last = max(time.Since(c.start).Seconds(), c.last)
	return c.last
}

// wrote writes out when it is full, and otherwise makes sure the timer
// will.
func (c *castWriter) wrote() error {
	if len(c.out) >= flushBytes {
		return c.flushLocked()
	}
	if !c.armed && c.every > 0 {
		c.armed = true
		c.timer.Reset(c.every)
	}
	return nil
}

// line appends [t, code, data] and a newline to out.
func (c *castWriter) line(t float64, code string, data []byte) {
	c.out = append(c.out, '[')
	c.out = strconv.AppendFloat(c.out, t, 'f', 6, 64)
	c.out = append(c.out, ", \""...)
	c.out = append(c.out, code...)
	c.out = append(c.out, "\", "...)
	c.out = appendJSONString(c.out, data)
	c.out = append(c.out, "]\n"...)
}

// flushLocked writes out to the file.
func (c *castWriter) flushLocked() error {
	if c.held {
		if len(c.out) < maxHeld {
			return c.err
		}
		return c.releaseLocked(c.fallback)
	}
	if c.err != nil || len(c.out) == 0 {
		return c.err
	}
	n, err := c.f.Write(c.out)
	c.sum.Write(c.out[:n])
	c.size += int64(n)
	c.out = c.out[:0]
	if err != nil {
		c.err = err
	}
	return c.err
}

// close writes what is pending (an incomplete UTF-8 sequence as U+FFFD),
// syncs and closes the file, and returns its SHA-256 and size.
func (c *castWriter) close() (sum []byte, size int64, err error) {
	c.timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for dir, code := range []string{eventOutput, eventInput} {
		if len(c.partial[dir]) > 0 {
			c.line(c.last, code, c.partial[dir])
			c.partial[dir] = nil
		}
	}
	if c.held {
		err = c.releaseLocked(c.fallback)
	} else {
		err = c.flushLocked()
	}
	if err == nil {
		err = c.f.Sync()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	return c.sum.Sum(nil), c.size, err
}

// incompleteTail returns the length of an incomplete UTF-8 sequence at
// the end of p (0 if p ends with a complete rune or an invalid byte).
func incompleteTail(p []byte) int {
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		b := p[len(p)-k]
		if utf8.RuneStart(b) {
			if b >= 0xC0 && !utf8.FullRune(p[len(p)-k:]) {
				return k
			}
			return 0
		}
	}
	return 0
}

const hexDigits = "0123456789abcdef"

// plain are the bytes a JSON string holds as they are: printable ASCII
// but the quote and the backslash.
var plain = func() (t [256]bool) {
	for b := 0x20; b < 0x7f; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendJSONString appends p as a JSON string: UTF-8 kept as it is,
// invalid bytes as U+FFFD (asciicast's data is text), quotes, backslashes
// and control characters escaped. It allocates nothing beyond dst's
// growth.
func appendJSONString(dst, p []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(p); {
		// Runs of printable ASCII that need no escape, in one append.
		j := i
		for j < len(p) && plain[p[j]] {
			j++
		}
		if j > i {
			dst = append(dst, p[i:j]...)
			i = j
			continue
		}
		b := p[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b == '\n':
				dst = append(dst, '\\', 'n')
			case b == '\r':
				dst = append(dst, '\\', 'r')
			case b == '\t':
				dst = append(dst, '\\', 't')
			case b < 0x20 || b == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			default:
				dst = append(dst, b)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(p[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\ufffd"...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			dst = append(dst, p[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}
