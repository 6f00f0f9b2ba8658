// Package record writes the proxy's session recordings (issue 14): a
// proxy.Recorder that records serial and console sessions as asciicast
// v2 files and VNC sessions as RFB recordings (rfb.go: the container;
// export.go: their frames), in a directory, each closed with a signed
// manifest, and what reads them back (Open, Verify) for "virtconsole
// recordings".
//
// A recording of session ID started at T is DIR/T-KIND-ID.cast (T as
// 20060102T150405Z), mode 0600: an asciicast v2 header (80x24, the
// start, and the session's Identity under "virtconsole"), then "o"
// events for what the console sent the viewer, "i" events for what the
// viewer typed only with Input (--record-input), and "m" markers for the
// other viewers of a shared console joining and leaving. Neither the
// token nor any password is ever in it: the header has the token's ID
// (resolver.TokenID), and the proxy supplies console passwords on its
// side of the handshake, which is not recorded.
//
// When the session ends, DIR/T-KIND-ID.cast.manifest.json is written
// beside it (ManifestSuffix): the recording's SHA-256 and size, the
// session, its start and end, complete=true, signed with the Ed25519 key
// (see Manifest for exactly what is signed). A recording without one was
// cut short (the proxy was killed): it is incomplete, and still plays up
// to its last complete line.
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/protocols/vnc/vncclient"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// DefaultFlushInterval is how long recorded output may wait in memory
// before it is written to the file.
const DefaultFlushInterval = time.Second

// Identity is who and what a recording is of: the header's
// "virtconsole" object and the manifest's "session".
type Identity struct {
	SessionID    string `json:"session_id"`
	Kind         string `json:"kind"`
	Console      string `json:"console"` // the console's address
	Domain       string `json:"domain,omitempty"`
	DomainUUID   string `json:"domain_uuid,omitempty"`
	Role         string `json:"role,omitempty"`
	Client       string `json:"client"`
	ForwardedFor string `json:"forwarded_for,omitempty"`
	ClientCert   string `json:"client_cert,omitempty"` // the client certificate's subject
	TokenID      string `json:"token_id,omitempty"`    // resolver.TokenID: 12 hex digits of the token's SHA-256, never the token
	Grant        string `json:"grant,omitempty"`       // the share link's ID, when one admitted the session
	Input        bool   `json:"input"`                 // whether "i" events (the viewer's input) are recorded
}

func identity(s *proxy.Session, input bool) *Identity {
	id := &Identity{SessionID: s.ID, Kind: string(s.Target.Kind), Console: s.Target.Address, Domain: s.Target.Domain,
		DomainUUID: s.Target.DomainUUID, Role: string(s.Role), Client: s.Client.Addr, ForwardedFor: s.Client.ForwardedFor,
		ClientCert: s.Client.CertSubject, TokenID: s.TokenID, Input: input}
	if s.Grant != nil {
		id.Grant = s.Grant.JTI
	}
	return id
}

// Recorder records sessions in Dir: a proxy.Recorder.
type Recorder struct {
	// Dir is where recordings are written; "" records nothing (a
	// console whose policy is on or required then says why).
	Dir string
	// Kinds are the console kinds recorded by default (policy on); a
	// console's own policy (protocols.Target.Record) overrides it.
	Kinds map[protocols.Kind]bool
	// Input records the viewer's input ("i" events). Off by default:
	// what a viewer types may be a password.
	Input bool
	// Key signs the manifests; nil writes them unsigned.
	Key *Key
	// FlushInterval bounds how long output waits in memory; zero means
	// DefaultFlushInterval.
	FlushInterval time.Duration
	// Logger is told when a recording fails; nil means slog.Default().
	Logger *slog.Logger
}

// Recordable are the kinds this package can record.
var Recordable = []protocols.Kind{protocols.KindSerial, protocols.KindConsole, protocols.KindVNC, protocols.KindSPICE}

// Policy implements proxy.Recorder.
func (r *Recorder) Policy(s *proxy.Session) protocols.RecordPolicy {
	if p := s.Target.Record; p != protocols.RecordDefault {
		return p
	}
	if r.Kinds[s.Target.Kind] {
		return protocols.RecordOn
	}
	return protocols.RecordOff
}

// Open implements proxy.Recorder: it creates the session's file and
// writes its header.
func (r *Recorder) Open(s *proxy.Session) (proxy.Recording, error) {
	vncKind, spiceKind := s.Target.Kind == protocols.KindVNC, s.Target.Kind == protocols.KindSPICE
	if !s.Target.Kind.IsText() && !vncKind && !spiceKind {
		return nil, fmt.Errorf("recording %s sessions is not supported (serial, console, VNC and SPICE sessions are)", s.Target.Kind)
	}
	if r.Dir == "" {
		return nil, errors.New("the proxy has no recording directory: start it with --record-dir DIR")
	}
	start := time.Now()
	ext := ".cast"
	switch {
	case vncKind:
		ext = ".rfb"
	case spiceKind:
		ext = ".jsonl"
	}
	name := filepath.Join(r.Dir, fmt.Sprintf("%s-%s-%s%s", start.UTC().Format("20060102T150405Z"), s.Target.Kind, s.ID, ext))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot create the recording %s: %w", name, unwrapErr(err))
	}
	id := identity(s, r.Input)
	title := id.Kind + " " + id.Console
	if id.Domain != "" {
		title = id.Kind + " of " + id.Domain
	}
	var h any = &Header{Version: castVersion, Width: castWidth, Height: castHeight, Timestamp: start.Unix(), Title: title,
		Env: map[string]string{"TERM": castTerm}, Virtconsole: id}
	format := FormatAsciicast
	var rfb *rfbClient
	switch {
	case vncKind:
		rh := &RFBHeader{Format: FormatRFB, Version: rfbVersion, Timestamp: start.Unix(), Virtconsole: id}
		h, format = rh, FormatRFB
		rfb = &rfbClient{input: r.Input, header: rh}
	case spiceKind:
		h, format = &RFBHeader{Format: FormatMetadata, Version: metadataVersion, Timestamp: start.Unix(), Virtconsole: id}, FormatMetadata
	}
	every := r.FlushInterval
	if every <= 0 {
		every = DefaultFlushInterval
	}
	w, err := newCastWriter(f, start, h, vncKind, every)
	if err != nil {
		f.Close()
		os.Remove(name)
		return nil, fmt.Errorf("cannot write the recording %s: %w", name, unwrapErr(err))
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	failOpen := r.Policy(s) != protocols.RecordRequired
	return &recording{name: name, w: w, id: id, start: start, input: r.Input, key: r.Key, failOpen: failOpen,
		format: format, rfb: rfb, meta: spiceKind, log: log.With("id", s.ID, "recording", name)}, nil
}

// recording is one session's: a proxy.Recording.
type recording struct {
	name      string
	w         *castWriter
	id        *Identity
	start     time.Time
	input     bool
	key       *Key
	failOpen  bool // policy on: a failure stops the recording, not the session
	format    string
	meta      bool       // a SPICE session's: metadata only
	rfb       *rfbClient // a VNC recording's: the viewer's stream, followed
	rfbWarned bool
	log       *slog.Logger

	once   sync.Once
	failed error // the failure that stopped a fail-open recording
}

func (r *recording) Name() string { return r.name }

func (r *recording) Output(p []byte) error {
	if r.meta {
		return nil
	}
	if r.rfb != nil {
		err := r.w.frame(RecordServer, p)
		if err == nil && r.rfb.header != nil {
			err = r.serverInit(p)
		}
		return r.check(err)
	}
	return r.check(r.w.event(eventOutput, 0, p))
}

func (r *recording) Input(p []byte) error {
	if r.meta {
		return nil
	}
	if r.rfb != nil {
		// The viewer's pixel format and encodings are recorded always
		// (the exporter needs them), its input only with Input.
		err := r.rfb.split(p, r.w)
		if r.rfb.err != nil && !r.rfbWarned {
			r.rfbWarned = true // Input is called on one goroutine
			r.log.Warn("the viewer's messages are no longer recorded", "err", r.rfb.err)
		}
		return r.check(err)
	}
	if !r.input {
		return nil
	}
	return r.check(r.w.event(eventInput, 1, p))
}

func (r *recording) Marker(label string) error {
	if r.meta {
		return nil
	}
	if r.rfb != nil {
		return r.check(r.w.frame(RecordMarker, []byte(label)))
	}
	return r.check(r.w.event(eventMarker, -1, []byte(label)))
}

// serverInit reads QEMU's ServerInit (RFC 6143 §7.3.2) from the start
// of the server's stream into the header, and writes the header once it
// has it all.
func (r *recording) serverInit(p []byte) error {
	h := r.rfb.header
	init := &r.rfb.init
	need := 24
	if len(*init) >= 24 {
		need += int(binary.BigEndian.Uint32((*init)[20:]))
	}
	for len(p) > 0 && len(*init) < need && need <= 24+maxServerInitName {
		n := min(len(p), need-len(*init))
		*init, p = append(*init, p[:n]...), p[n:]
		if len(*init) == 24 {
			need += int(binary.BigEndian.Uint32((*init)[20:]))
		}
	}
	if len(*init) < need && need <= 24+maxServerInitName {
		return nil // more to come
	}
	hh := *h // h is also the writer's fallback: not changed
	if need <= 24+maxServerInitName {
		si := *init
		pf := vncclient.ParsePixelFormat(si[4:20])
		hh.Width, hh.Height, hh.PixelFormat, hh.Name = int(binary.BigEndian.Uint16(si)), int(binary.BigEndian.Uint16(si[2:])), &pf, string(si[24:])
	}
	r.rfb.header, r.rfb.init = nil, nil
	return r.w.release(&hh)
}

// check passes err on for a fail-closed recording; a fail-open one logs
// it once and reports nothing (its writer keeps failing, without I/O).
func (r *recording) check(err error) error {
	if err == nil || !r.failOpen {
		return err
	}
	r.once.Do(func() {
		r.failed = err
		r.log.Warn("session recording failed: the session goes on unrecorded", "err", err)
	})
	return nil
}

// Close implements proxy.Recording: it closes the file and writes the
// manifest (none when the recording failed: it is then incomplete).
func (r *recording) Close(s *proxy.Session) error {
	end := time.Now().UTC()
	if r.meta {
		m := &SessionEnd{End: end, Channel: s.Info.Channel, SPICESession: s.Info.Session, BytesToConsole: s.BytesToConsole.Load(),
			BytesFromConsole: s.BytesFromConsole.Load(), Outcome: s.Outcome, Reason: s.Reason}
		if err := r.w.jsonLine(m); err != nil {
			r.check(err)
		}
	}
	sum, size, err := r.w.close()
	if err != nil {
		return fmt.Errorf("recording %s: %w", r.name, err)
	}
	m := &Manifest{Version: manifestVersion, File: filepath.Base(r.name), Format: r.format, SHA256: fmt.Sprintf("%x", sum),
		Size: size, Complete: true, Start: r.start.UTC(), End: end, Session: *r.id,
		Outcome: s.Outcome, Reason: s.Reason}
	if err := m.sign(r.key); err != nil {
		return err
	}
	return writeManifest(r.name+ManifestSuffix, m)
}
