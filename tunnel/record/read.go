package record

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// maxLine bounds one line of a recording as it is read back (events
// carry at most maxEventData bytes, at most 6 bytes each when escaped).
const maxLine = 1 << 20

// Event is one event of a recording.
type Event struct {
	Time float64 // seconds since the start
	Code string  // "o", "i" or "m"
	Data string
}

// Reader reads a recording's events back: the header, then each event,
// up to the last complete line (a recording cut short may end in a torn
// one, which is not an error: Truncated says so).
type Reader struct {
	Header    Header
	sc        *bufio.Scanner
	Truncated bool // the file ended inside a line
}

// NewReader reads r's header.
func NewReader(r io.Reader) (*Reader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, errors.New("empty file: not an asciicast recording")
	}
	rd := &Reader{sc: sc}
	if err := json.Unmarshal(sc.Bytes(), &rd.Header); err != nil || rd.Header.Version != castVersion {
		return nil, errors.New("not an asciicast v2 recording (its first line is not a version 2 header)")
	}
	return rd, nil
}

// Next returns the next event; io.EOF after the last complete one.
func (rd *Reader) Next() (Event, error) {
	for rd.sc.Scan() {
		line := rd.sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var raw []json.RawMessage
		var e Event
		if json.Unmarshal(line, &raw) != nil || len(raw) != 3 || json.Unmarshal(raw[0], &e.Time) != nil ||
			json.Unmarshal(raw[1], &e.Code) != nil || json.Unmarshal(raw[2], &e.Data) != nil {
			// A torn last line of a recording cut short, or garbage:
			// the recording plays up to here.
			rd.Truncated = true
			return Event{}, io.EOF
		}
		return e, nil
	}
	if err := rd.sc.Err(); err != nil {
		rd.Truncated = true
		if errors.Is(err, bufio.ErrTooLong) {
			return Event{}, io.EOF
		}
		return Event{}, err
	}
	return Event{}, io.EOF
}

// Info is what "recordings list" shows of a recording.
type Info struct {
	File     string        `json:"file"`
	Kind     string        `json:"kind"`
	Console  string        `json:"console"`
	Domain   string        `json:"domain,omitempty"`
	Client   string        `json:"client"`
	Session  string        `json:"session_id"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"duration_seconds"`
	Size     int64         `json:"size"`
	// Status is StatusVerified, StatusInvalid or StatusIncomplete with a
	// key; without one "signed", "unsigned" or StatusIncomplete (from
	// the manifest's presence and signature field alone).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// List describes the recordings (*.cast, *.rfb, *.jsonl) in dir, oldest first. With key
// each is verified; without, its status only says whether a manifest
// and a signature are there.
func List(dir string, key *Key) ([]Info, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.cast"))
	if err != nil {
		return nil, err
	}
	for _, ext := range []string{"*.rfb", "*.jsonl"} {
		more, err := filepath.Glob(filepath.Join(dir, ext))
		if err != nil {
			return nil, err
		}
		names = append(names, more...)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("recordings directory: %w", err)
	}
	var infos []Info
	for _, name := range names {
		info, err := describe(name, key)
		if err != nil {
			info = Info{File: name, Status: StatusInvalid, Reason: err.Error()}
		}
		infos = append(infos, info)
	}
	sort.SliceStable(infos, func(i, j int) bool { return infos[i].Start.Before(infos[j].Start) })
	return infos, nil
}

func describe(name string, key *Key) (Info, error) {
	f, err := os.Open(name)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	var ts int64
	var id *Identity
	var last float64
	switch {
	case strings.HasSuffix(name, ".jsonl"):
		dec := json.NewDecoder(f)
		var h RFBHeader
		if err := dec.Decode(&h); err != nil || h.Format != FormatMetadata {
			return Info{}, fmt.Errorf("not a %s recording", FormatMetadata)
		}
		ts, id = h.Timestamp, h.Virtconsole
		var e SessionEnd
		if dec.Decode(&e) == nil && !e.End.IsZero() {
			last = e.End.Sub(time.Unix(h.Timestamp, 0)).Seconds()
		}
	case strings.HasSuffix(name, ".rfb"):
		rd, err := NewRFBReader(f)
		if err != nil {
			return Info{}, err
		}
		ts, id = rd.Header.Timestamp, rd.Header.Virtconsole
		for {
			rec, err := rd.Next()
			if err != nil {
				break
			}
			last = rec.Time.Seconds()
		}
	default:
		rd, err := NewReader(f)
		if err != nil {
			return Info{}, err
		}
		ts, id = rd.Header.Timestamp, rd.Header.Virtconsole
		for {
			e, err := rd.Next()
			if err != nil {
				break
			}
			last = e.Time
		}
	}
	info := Info{File: name, Size: fi.Size(), Start: time.Unix(ts, 0).UTC()}
	if id != nil {
		info.Kind, info.Console, info.Domain, info.Client, info.Session = id.Kind, id.Console, id.Domain, id.Client, id.SessionID
	}
	info.Duration = time.Duration(last * float64(time.Second))
	info.Seconds = last
	if key != nil {
		v, err := VerifyFile(name, key)
		if err != nil {
			return Info{}, err
		}
		info.Status, info.Reason = v.Status, v.Reason
		return info, nil
	}
	var m Manifest
	switch data, err := os.ReadFile(name + ManifestSuffix); {
	case errors.Is(err, os.ErrNotExist):
		info.Status = StatusIncomplete
	case err != nil:
		return Info{}, err
	case json.Unmarshal(data, &m) != nil:
		info.Status, info.Reason = StatusInvalid, "the manifest is not valid JSON"
	case m.Signature != "":
		info.Status = "signed"
	default:
		info.Status = "unsigned"
	}
	return info, nil
}
