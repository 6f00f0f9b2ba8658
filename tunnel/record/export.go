package record

import (
	"errors"
	"fmt"
	"image"
	"io"
	"time"

	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
)

// Frames replays the VNC recording rd and calls emit with the screen at
// each time t = k/fps (k = 0, 1, …) before until, in order: the
// framebuffer as the viewer had it once every record before t had
// arrived (an update still arriving shows in part, as the viewer showed
// it). until 0 means the last record's time. The image is the decoder's:
// valid during the call. With at >= 0, emit is called once, for the
// screen at at (fps and until are ignored).
//
// The viewer's SetPixelFormat is applied where the recording has it
// (between server records: viewers set it before asking for updates);
// a colour-map pixel format, or an encoding the decoder does not know,
// is an error (the proxy steers recorded viewers away from them).
func Frames(rd *RFBReader, fps float64, until, at time.Duration, emit func(t time.Duration, img *image.RGBA) error) error {
	if at < 0 && fps <= 0 {
		return errors.New("the frame rate must be more than 0")
	}
	s := &replay{rd: rd, fps: fps, at: at, emit: emit}
	c, err := vncclient.Replay(s)
	if err != nil {
		return s.fail(err)
	}
	s.client = c
	if s.pf != nil {
		if err := c.SetPixelFormat(*s.pf); err != nil {
			return err
		}
	}
	for {
		if _, err := c.ReadMessage(time.Time{}); err != nil {
			if s.err == nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			break // the end, or a recording cut short: it plays up to there
		}
	}
	if s.err != nil {
		if errors.Is(s.err, errDone) {
			return nil
		}
		return s.err
	}
	if until < s.last {
		until = s.last
	}
	if at >= 0 {
		if at > until {
			return fmt.Errorf("the recording ends at %s, before %s", until.Round(time.Millisecond), at)
		}
		return emit(at, c.Image())
	}
	// The frames after the last record, to the end; at least one shows
	// the screen as the last record left it.
	if err := s.tick(until); err != nil {
		return err
	}
	if time.Duration(float64(s.frame-1)/fps*float64(time.Second)) < s.last {
		return emit(time.Duration(float64(s.frame)/fps*float64(time.Second)), c.Image())
	}
	return nil
}

var errDone = errors.New("done")

// MaxExportFrames bounds the frames one export makes (a day at 10 fps):
// a recording's timestamps are input, and a corrupt one must not make
// the exporter run for ever.
const MaxExportFrames = 24 * 3600 * 10

// replay is the server's stream of a recording, as an io.Reader for the
// decoder: it reads records as the decoder asks for bytes, applies the
// viewer's pixel format, and emits the frames due before each server
// record it hands over.
type replay struct {
	rd      *RFBReader
	fps     float64
	at      time.Duration
	emit    func(time.Duration, *image.RGBA) error
	client  *vncclient.Client
	pending []byte
	last    time.Duration // the time of the last record read
	frame   int           // the next frame's number
	err     error         // emit's, or the client stream's

	// The viewer's stream: bytes of a message not whole yet, and a
	// pixel format seen before the decoder was made.
	cbuf   []byte
	inited bool
	pf     *vncclient.PixelFormat
}

func (s *replay) fail(err error) error {
	if s.err != nil && !errors.Is(s.err, errDone) {
		return s.err
	}
	return err
}

func (s *replay) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.err != nil {
			return 0, io.EOF
		}
		rec, err := s.rd.Next()
		if err != nil {
			return 0, err
		}
		s.last = rec.Time
		switch rec.Dir {
		case RecordClient:
			if err := s.viewer(rec.Data); err != nil {
				s.err = err
				return 0, io.EOF
			}
		case RecordServer:
			if s.client != nil {
				if err := s.tick(rec.Time); err != nil {
					s.err = err
					return 0, io.EOF
				}
			}
			s.pending = rec.Data
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// tick emits the frames due before t.
func (s *replay) tick(t time.Duration) error {
	if s.at >= 0 {
		if s.at < t {
			if err := s.emit(s.at, s.client.Image()); err != nil {
				return err
			}
			return errDone
		}
		return nil
	}
	if due := t.Seconds() * s.fps; due > MaxExportFrames {
		return fmt.Errorf("a record at %s would need %.0f frames at %g fps, more than the %d an export makes; is the recording corrupt? (--at exports one frame)",
			t.Round(time.Millisecond), due, s.fps, MaxExportFrames)
	}
	for {
		ft := time.Duration(float64(s.frame) / s.fps * float64(time.Second))
		if ft >= t {
			return nil
		}
		if err := s.emit(ft, s.client.Image()); err != nil {
			return err
		}
		s.frame++
	}
}

// viewer follows the viewer's messages for its pixel format.
func (s *replay) viewer(b []byte) error {
	if !s.inited && len(b) > 0 {
		s.inited, b = true, b[1:] // ClientInit
	}
	s.cbuf = append(s.cbuf, b...)
	for len(s.cbuf) > 0 {
		size, _, err := vnc.ClientMessageSize(s.cbuf)
		if err != nil {
			return nil // not followed further: the pixel format stays
		}
		if size == 0 || len(s.cbuf) < size {
			return nil
		}
		if vnc.ClientMessageType(s.cbuf[0]) == vnc.MsgSetPixelFormat {
			pf := vncclient.ParsePixelFormat(s.cbuf[4:20])
			if s.client == nil {
				s.pf = &pf
			} else if err := s.client.SetPixelFormat(pf); err != nil {
				return err
			}
		}
		s.cbuf = s.cbuf[:copy(s.cbuf, s.cbuf[size:])]
	}
	return nil
}
