package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/vnc"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Recorder records sessions (package tunnel/record writes them to
// files). The proxy asks it, before the websocket upgrade, whether a
// session is recorded and opens its recording; then it shows the
// recording the session's plaintext where it already holds it (the hub
// of a text console, tunnel.Join's tap otherwise), and closes it when
// the session ends.
//
// The policy is fail-closed for RecordRequired: a recording that cannot
// be opened refuses the session with 503 and a one-line reason, and a
// Recording method that fails ends it (websocket close 1011, "session
// recording failed: …"). For RecordOn the session goes on unrecorded: the
// proxy logs a warning and Session.NotRecorded says why (the audit log
// writes it); a Recording of such a session should report no errors of
// its own after the first (it stops recording and says so once).
type Recorder interface {
	// Policy is s's recording policy: RecordOff, RecordOn or
	// RecordRequired (s.Target.Record, the console's own, or the
	// recorder's default for its kind). Called before Open.
	Policy(s *Session) protocols.RecordPolicy
	// Open starts s's recording; an error says why it cannot be written.
	Open(s *Session) (Recording, error)
}

// Recording is one session's recording. Output and Input are called on
// the session's byte path, with the proxy's buffers (valid only during
// the call: a Recording copies what it keeps), before the bytes are
// passed on, so that a failing fail-closed recording lets no byte pass
// unrecorded. Output, Input and Marker may be called from different
// goroutines; Close is called once, after the others have returned.
type Recording interface {
	// Output is what the console sent the viewer.
	Output(p []byte) error
	// Input is what the viewer sent the console (a control viewer's
	// input only: a view-only viewer's is dropped unrecorded).
	Input(p []byte) error
	// Marker notes an event of the session, e.g. another viewer joining
	// the shared console.
	Marker(label string) error
	// Close ends the recording with s's end fields set.
	Close(s *Session) error
	// Name identifies the recording (its file) in logs and the audit
	// log.
	Name() string
}

const reasonRecording = "session recording failed"

// openRecording opens sess's recording as its policy says: nil and no
// error when it is not recorded, a 503 when it must be and cannot.
func (p *Proxy) openRecording(sess *Session, t protocols.Target, log *slog.Logger) (Recording, *Error) {
	policy := t.Record
	if p.Recorder != nil {
		policy = p.Recorder.Policy(sess)
	}
	switch policy {
	case protocols.RecordOff, protocols.RecordDefault:
		return nil, nil
	}
	var rec Recording
	var err error
	if p.Recorder != nil {
		rec, err = p.Recorder.Open(sess)
	} else {
		err = errNoRecorder
	}
	if err == nil {
		sess.Recording = rec.Name()
		return rec, nil
	}
	if policy == protocols.RecordRequired {
		// The cause (with the proxy's paths) is logged, not told.
		e := fail(http.StatusServiceUnavailable, err, "this console must be recorded and its recording cannot be written (the proxy's log says why); try again later")
		e.target = &t
		return nil, e
	}
	sess.NotRecorded = oneLine(err)
	log.Warn("session not recorded", "err", err)
	return nil, nil
}

var errNoRecorder = errors.New("the proxy records no sessions: start it with --record-dir DIR")

// closeRecording closes sess's recording, if any and not closed yet.
func closeRecording(rec *Recording, sess *Session, log *slog.Logger) {
	if *rec == nil {
		return
	}
	if err := (*rec).Close(sess); err != nil {
		log.Warn("session recording not closed", "recording", (*rec).Name(), "err", err)
	}
	*rec = nil
}

// recordTaps shows a session's bytes to rec on tunnel.Join's copy loop;
// a failure closes the viewer's websocket with 1011 and the reason
// before Join closes it.
func recordTaps(rec Recording, client, server net.Conn) tunnel.JoinOption {
	viewer := client
	if cs, ok := server.(*consoleSide); ok {
		viewer = cs.viewer
	}
	failed := func(err error) error {
		closeWith(viewer, wsconn.CloseInternalError, reasonRecording+": "+oneLine(err))
		return fmt.Errorf("%s: %w", reasonRecording, err)
	}
	return tunnel.WithTap(
		func(p []byte) error {
			if err := rec.Input(p); err != nil {
				return failed(err)
			}
			return nil
		},
		func(p []byte) error {
			if err := rec.Output(p); err != nil {
				return failed(err)
			}
			return nil
		})
}

// steerRecorded limits a recorded VNC session's viewer to the encodings
// a recording's exporter decodes (vncclient.Decodes: Raw, CopyRect,
// Hextile, ZRLE and pseudo-encodings without framebuffer data to
// decode), so that every VNC recording exports; the viewer's pixel
// format is left as it sets it.
func steerRecorded(hs protocols.Handshaker) {
	if h, ok := hs.(*vnc.Handshaker); ok {
		h.Encodings = vncclient.Decodes
	}
}
