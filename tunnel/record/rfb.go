package record

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
)

// A VNC recording (FormatRFB, DIR/T-vnc-ID.rfb) is our own container, not
// FBS (rfbproxy's): FBS holds the server's stream alone, and the
// exporter needs the viewer's SetPixelFormat and SetEncodings too.
//
//   - The header: one line of JSON, an RFBHeader ({"format":
//     "virtconsole-rfb", "version": 1, "timestamp": Unix seconds,
//     "virtconsole": the Identity, then QEMU's ServerInit (RFC 6143
//     §7.3.2): "width", "height", "pixel_format", "name"}), and a
//     newline. The file is created when the session opens; the header
//     is written once the ServerInit has come (the records before it
//     wait in memory), or without the ServerInit's fields if the
//     session ends first. The ServerInit is also the first bytes of the
//     server's stream, where the exporter reads it.
//   - Then records, each a frame of 13 bytes and data: u8 direction
//     ('S' what QEMU sent the viewer, 'C' what the viewer sent QEMU,
//     'M' a marker's label), u64 microseconds since the start, u32
//     length (at most maxEventData), the bytes; integers big-endian.
//
// The 'S' records are the server's stream from ServerInit on, whole.
// The 'C' records are the viewer's from ClientInit on, whole but for its
// input: KeyEvent, PointerEvent, ClientCutText and QEMU extended key
// events are left out (whole messages, so the stream still parses)
// unless the recorder's Input is set. Nothing before ClientInit is
// recorded: the VNC password (the proxy's, toward QEMU) is exchanged
// before, and the viewer's leg has no password.
//
// A recording cut short ends in a torn record at worst: readers stop at
// the last whole one.
const (
	FormatRFB  = "virtconsole-rfb" // the header's and manifest's "format"
	rfbVersion = 1

	RecordServer byte = 'S'
	RecordClient byte = 'C'
	RecordMarker byte = 'M'

	rfbFrameLen = 13
)

// RFBHeader is a VNC recording's first line.
type RFBHeader struct {
	Format      string    `json:"format"`
	Version     int       `json:"version"`
	Timestamp   int64     `json:"timestamp"` // Unix seconds of the start
	Virtconsole *Identity `json:"virtconsole,omitempty"`
	// QEMU's ServerInit: the framebuffer's size, pixel format and
	// desktop name (absent when the session ended before it).
	Width       int                    `json:"width,omitempty"`
	Height      int                    `json:"height,omitempty"`
	PixelFormat *vncclient.PixelFormat `json:"pixel_format,omitempty"`
	Name        string                 `json:"name,omitempty"`
}

// maxServerInitName bounds the desktop name a header waits for; a longer
// one is left out of it (the stream has it).
const maxServerInitName = 4096

// frame appends one record (split into records of at most maxEventData
// bytes) for dir.
func (c *castWriter) frame(dir byte, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	us := uint64(c.stamp() * 1e6)
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), maxEventData)
		c.out = append(c.out, dir)
		c.out = binary.BigEndian.AppendUint64(c.out, us)
		c.out = binary.BigEndian.AppendUint32(c.out, uint32(n))
		c.out = append(c.out, data[:n]...)
		data = data[n:]
		if len(c.out) >= flushBytes && len(data) > 0 {
			if err := c.flushLocked(); err != nil {
				return err
			}
		}
	}
	return c.wrote()
}

// rfbClient follows the viewer's stream to leave its input out of a
// recording: whole messages, sized by vnc.ClientMessageSize.
type rfbClient struct {
	header *RFBHeader // not written yet: waiting for QEMU's ServerInit
	init   []byte     // its bytes so far

	input      bool // record input too
	inited     bool // ClientInit has gone by
	pass, drop int  // of the current message: bytes to record, or to leave out
	hdr        [16]byte
	nh         int   // a message's first bytes, held until it can be sized
	err        error // the stream could not be followed: nothing more is recorded
}

// split records the parts of p to record in w, as 'C' records.
func (s *rfbClient) split(p []byte, w *castWriter) error {
	keep := func(b []byte) error { return w.frame(RecordClient, b) }
	for len(p) > 0 && s.err == nil {
		switch {
		case !s.inited:
			s.inited = true
			if err := keep(p[:1]); err != nil { // ClientInit
				return err
			}
			p = p[1:]
		case s.pass > 0:
			n := min(s.pass, len(p))
			if err := keep(p[:n]); err != nil {
				return err
			}
			s.pass, p = s.pass-n, p[n:]
		case s.drop > 0:
			n := min(s.drop, len(p))
			s.drop, p = s.drop-n, p[n:]
		case s.nh == 0:
			size, isInput, err := vnc.ClientMessageSize(p)
			if err != nil {
				s.err = err
				return nil
			}
			if size == 0 { // the header is split: hold it
				s.nh = copy(s.hdr[:], p)
				return nil
			}
			s.setMessage(size, isInput)
		default:
			s.hdr[s.nh] = p[0]
			s.nh, p = s.nh+1, p[1:]
			size, isInput, err := vnc.ClientMessageSize(s.hdr[:s.nh])
			if err != nil {
				s.err = err
				return nil
			}
			if size == 0 {
				continue
			}
			held := s.hdr[:s.nh]
			s.nh = 0
			s.setMessage(size-len(held), isInput)
			if !isInput || s.input {
				if err := keep(held); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *rfbClient) setMessage(size int, isInput bool) {
	if isInput && !s.input {
		s.drop = size
	} else {
		s.pass = size
	}
}

// Record is one record of a VNC recording.
type Record struct {
	Dir  byte          // RecordServer, RecordClient or RecordMarker
	Time time.Duration // since the start
	Data []byte        // valid until the next call of Next
}

// RFBReader reads a VNC recording's records back, up to the last whole
// one (Truncated says a torn one followed).
type RFBReader struct {
	Header    RFBHeader
	r         *bufio.Reader
	buf       []byte
	Truncated bool
}

// NewRFBReader reads r's header.
func NewRFBReader(r io.Reader) (*RFBReader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return nil, errors.New("not a VNC recording (no header line)")
	}
	rd := &RFBReader{r: br, buf: make([]byte, maxEventData)}
	if json.Unmarshal(line, &rd.Header) != nil || rd.Header.Format != FormatRFB {
		return nil, fmt.Errorf("not a VNC recording (its first line is not a %s header)", FormatRFB)
	}
	if rd.Header.Version != rfbVersion {
		return nil, fmt.Errorf("a %s recording of version %d; this virtconsole reads version %d", FormatRFB, rd.Header.Version, rfbVersion)
	}
	return rd, nil
}

// Next returns the next record; io.EOF after the last whole one.
func (rd *RFBReader) Next() (Record, error) {
	var h [rfbFrameLen]byte
	if _, err := io.ReadFull(rd.r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			rd.Truncated = true
			return Record{}, io.EOF
		}
		return Record{}, err
	}
	n := binary.BigEndian.Uint32(h[9:])
	switch h[0] {
	case RecordServer, RecordClient, RecordMarker:
	default:
		rd.Truncated = true
		return Record{}, io.EOF
	}
	if n > maxEventData {
		rd.Truncated = true
		return Record{}, io.EOF
	}
	data := rd.buf[:n]
	if _, err := io.ReadFull(rd.r, data); err != nil {
		rd.Truncated = true
		return Record{}, io.EOF
	}
	return Record{Dir: h[0], Time: time.Duration(binary.BigEndian.Uint64(h[1:])) * time.Microsecond, Data: data}, nil
}
