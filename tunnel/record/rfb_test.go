package record

import (
	"bytes"
	"encoding/binary"
	"image"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// TestRFBRecording: a VNC session's streams come back from its recording
// record by record: the server's whole, the viewer's without its input
// (whole messages left out, however the bytes were split) unless Input;
// the manifest verifies; Frames replays the screen.
func TestRFBRecording(t *testing.T) {
	pf := []byte{32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0}
	serverInit := append(append([]byte{0, 4, 0, 2}, pf...), 0, 0, 0, 4, 'Q', 'E', 'M', 'U')
	update := []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 2, 0, 0, 0, 0} // one Raw 4×2 rectangle
	for i := 0; i < 8; i++ {
		update = append(update, 0, 0, 0xff, 0) // B, G, R, X: red
	}
	setPF := append([]byte{0, 0, 0, 0}, pf...)
	key := []byte{4, 1, 0, 0, 0, 0, 0, 0x61}
	pointer := []byte{5, 0, 0, 1, 0, 1}
	setEnc := []byte{2, 0, 0, 2, 0, 0, 0, 16, 0, 0, 0, 0}
	fbur := []byte{3, 0, 0, 0, 0, 0, 0, 4, 0, 2}
	viewer := bytes.Join([][]byte{{1}, setPF, key, setEnc, pointer, fbur}, nil)
	for _, input := range []bool{false, true} {
		r, key, s := testRecorder(t, protocols.KindVNC, input)
		rec, err := r.Open(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(rec.Name(), ".rfb") {
			t.Fatalf("recording %s", rec.Name())
		}
		rec.Input(viewer[:1])
		rec.Output(serverInit[:22]) // the header waits for all of it
		rec.Output(serverInit[22:])
		// The viewer's bytes in awkward pieces: a header split.
		for _, cut := range [][2]int{{1, 22}, {22, 31}, {31, 34}, {34, len(viewer)}} {
			if err := rec.Input(viewer[cut[0]:cut[1]]); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(150 * time.Millisecond)
		rec.Output(update[:10])
		rec.Output(update[10:])
		time.Sleep(150 * time.Millisecond)
		rec.Output([]byte{2}) // a bell: the last record
		s.Outcome, s.Reason = "closed", "closed"
		if err := rec.Close(s); err != nil {
			t.Fatal(err)
		}
		if v, err := VerifyFile(rec.Name(), key); err != nil || v.Status != StatusVerified || v.Manifest.Format != FormatRFB {
			t.Fatalf("verify: %+v, %v", v, err)
		}
		f, err := os.Open(rec.Name())
		if err != nil {
			t.Fatal(err)
		}
		rd, err := NewRFBReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if h := rd.Header; h.Width != 4 || h.Height != 2 || h.Name != "QEMU" || h.PixelFormat == nil || h.PixelFormat.BitsPerPixel != 32 || h.PixelFormat.RedShift != 16 {
			t.Fatalf("header without the ServerInit: %+v", h)
		}
		if rd.Header.Virtconsole.SessionID != s.ID || rd.Header.Virtconsole.Kind != "vnc" {
			t.Fatalf("header %+v", rd.Header)
		}
		var server, client []byte
		for {
			rc, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rc.Dir == RecordServer {
				server = append(server, rc.Data...)
			} else {
				client = append(client, rc.Data...)
			}
		}
		f.Close()
		want := bytes.Join([][]byte{{1}, setPF, setEnc, fbur}, nil)
		if input {
			want = viewer
		}
		if !bytes.Equal(client, want) {
			t.Errorf("input %v: the viewer's stream is % x\nwant % x", input, client, want)
		}
		if !bytes.Equal(server, bytes.Join([][]byte{serverInit, update, {2}}, nil)) {
			t.Errorf("the server's stream is % x", server)
		}

		f, _ = os.Open(rec.Name())
		rd, _ = NewRFBReader(f)
		var times []time.Duration
		var last [4]byte
		err = Frames(rd, 10, 0, -1, func(t time.Duration, img *image.RGBA) error {
			times = append(times, t)
			copy(last[:], img.Pix[:4])
			return nil
		})
		f.Close()
		if err != nil || len(times) < 3 || last != [4]byte{0xff, 0, 0, 0xff} {
			t.Fatalf("frames at %v, the last's first pixel %v, %v", times, last, err)
		}
		if got := binary.BigEndian.Uint16(serverInit); got != 4 {
			t.Fatal(got)
		}
	}
}

// TestSPICEMetadata: a SPICE session leaves metadata only: the header
// (identity, start) and, at its end, its channel and byte counts; no
// byte of the session; the manifest verifies; list shows it.
func TestSPICEMetadata(t *testing.T) {
	r, key, s := testRecorder(t, protocols.KindSPICE, false)
	rec, err := r.Open(s)
	if err != nil {
		t.Fatal(err)
	}
	s.Info.Channel, s.Info.Session = "display:0", "spice-1"
	rec.Output([]byte("secret display bytes"))
	rec.Input([]byte("secret keys"))
	s.BytesToConsole.Store(11)
	s.BytesFromConsole.Store(20)
	s.Outcome, s.Reason = "closed", "closed"
	if err := rec.Close(s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(rec.Name())
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 || strings.Contains(string(b), "secret") || !strings.Contains(lines[0], `"format":"virtconsole-metadata"`) ||
		!strings.Contains(lines[1], `"channel":"display:0"`) || !strings.Contains(lines[1], `"bytes_to_console":11,"bytes_from_console":20`) {
		t.Fatalf("the metadata recording:\n%s", b)
	}
	if v, err := VerifyFile(rec.Name(), key); err != nil || v.Status != StatusVerified {
		t.Fatalf("verify: %+v %v", v, err)
	}
	infos, err := List(r.Dir, key)
	if err != nil || len(infos) != 1 || infos[0].Kind != "spice" || infos[0].Status != StatusVerified {
		t.Fatalf("list: %+v %v", infos, err)
	}
}

// TestRFBRecordingAllocs: recording a VNC session's bytes allocates
// nothing per call.
func TestRFBRecordingAllocs(t *testing.T) {
	r, _, s := testRecorder(t, protocols.KindVNC, false)
	rec, err := r.Open(s)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close(s)
	update := make([]byte, 3000)
	viewer := []byte{3, 1, 0, 0, 0, 0, 2, 0, 1, 0x80, 4, 1, 0, 0, 0, 0, 0, 0x61}
	rec.Input([]byte{1})
	for i := 0; i < 100; i++ { // the buffer grows to its size
		rec.Output(update)
		rec.Input(viewer)
	}
	if n := testing.AllocsPerRun(200, func() {
		rec.Output(update)
		rec.Input(viewer[:7])
		rec.Input(viewer[7:])
	}); n != 0 {
		t.Errorf("%.1f allocations per call", n)
	}
}
