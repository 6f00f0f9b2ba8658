package record

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// testRecorder is a Recorder of kind (with input) in a new directory,
// its signing key, and a session of that kind.
func testRecorder(t *testing.T, kind protocols.Kind, input bool) (*Recorder, *Key, *proxy.Session) {
	t.Helper()
	dir := t.TempDir()
	key, err := GenerateKey(filepath.Join(t.TempDir(), "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	s := testSession()
	s.Target.Kind = kind
	return &Recorder{Dir: dir, Kinds: map[protocols.Kind]bool{kind: true}, Input: input, Key: key, FlushInterval: time.Hour}, key, s
}

func testSession() *proxy.Session {
	return &proxy.Session{ID: "0123456789abcdef", TokenID: "a1b2c3d4e5f6", Role: protocols.RoleControl,
		Client: proxy.Client{Addr: "192.0.2.1:5555", CertSubject: "CN=alice"},
		Target: proxy.TargetInfo{Kind: protocols.KindSerial, Address: "127.0.0.1:4555"}}
}

// TestCastRoundTrip: what the recorder is shown comes back from the file
// event by event, as valid JSON, with runes split between chunks kept
// whole, invalid bytes as U+FFFD, control characters escaped, long
// chunks split, and input only when asked for.
func TestCastRoundTrip(t *testing.T) {
	for _, input := range []bool{false, true} {
		r, key, s := testRecorder(t, protocols.KindSerial, input)
		if got := r.Policy(s); got != protocols.RecordOn {
			t.Fatalf("policy %q", got)
		}
		rec, err := r.Open(s)
		if err != nil {
			t.Fatal(err)
		}
		euro := "\u20ac"                          // 3 bytes
		long := strings.Repeat("é", maxEventData) // 2 bytes each: several events
		chunks := []string{"hello\r\n", euro[:1], euro[1:2], euro[2:] + "\"q\" \\ \x1b[0m\x00", "bad \xff byte", long}
		for _, c := range chunks {
			if err := rec.Output([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
		rec.Input([]byte("secret\n"))
		rec.Marker("viewer joined: session x")
		s.Outcome, s.Reason = proxy.EndClosed, "closed"
		if err := rec.Close(s); err != nil {
			t.Fatal(err)
		}

		f, err := os.Open(rec.Name())
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rd, err := NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if h := rd.Header; h.Width != 80 || h.Height != 24 || h.Virtconsole.TokenID != "a1b2c3d4e5f6" || h.Virtconsole.ClientCert != "CN=alice" {
			t.Fatalf("header %+v %+v", h, h.Virtconsole)
		}
		var out, in, marks strings.Builder
		events := 0
		for {
			e, err := rd.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			events++
			if !utf8.ValidString(e.Data) {
				t.Fatalf("event %q is not UTF-8", e.Data)
			}
			map[string]*strings.Builder{"o": &out, "i": &in, "m": &marks}[e.Code].WriteString(e.Data)
		}
		want := "hello\r\n" + euro + "\"q\" \\ \x1b[0m\x00" + "bad \ufffd byte" + long
		if out.String() != want {
			t.Fatalf("output differs:\n got %q\nwant %q", out.String()[:80], want[:80])
		}
		if (in.String() == "secret\n") != input || marks.String() != "viewer joined: session x" {
			t.Fatalf("input %v: input events %q, markers %q", input, in.String(), marks.String())
		}
		if rd.Truncated || events < 7 {
			t.Fatalf("%d events, truncated %v", events, rd.Truncated)
		}
		if v, err := VerifyFile(rec.Name(), &Key{Public: key.Public}); err != nil || v.Status != StatusVerified {
			t.Fatalf("verify: %+v %v", v, err)
		}
	}
}

// TestVerifyRefuses: a changed byte, a changed manifest field, another
// key and an unsigned manifest all fail; a missing manifest is
// incomplete, and its recording still reads up to its last complete
// line.
func TestVerifyRefuses(t *testing.T) {
	dir := t.TempDir()
	key, err := GenerateKey(filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := GenerateKey(filepath.Join(dir, "other.pem"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	record := func(k *Key) string {
		s := testSession()
		n++
		s.ID = strings.Repeat(string(rune('0'+n)), 16)
		rec, err := (&Recorder{Dir: dir, Key: k}).Open(s)
		if err != nil {
			t.Fatal(err)
		}
		rec.Output([]byte("login: root\r\n"))
		if err := rec.Close(testSession()); err != nil {
			t.Fatal(err)
		}
		return rec.Name()
	}
	check := func(name, path string, k *Key, status, reason string) {
		t.Helper()
		v, err := VerifyFile(path, k)
		if err != nil || v.Status != status || !strings.Contains(v.Reason, reason) {
			t.Errorf("%s: %+v %v; want %s (%s)", name, v, err, status, reason)
		}
	}
	path := record(key)
	check("intact", path, key, StatusVerified, "")
	check("another key", path, other, StatusInvalid, "does not verify with this key")

	b, _ := os.ReadFile(path)
	b[len(b)-5] ^= 0x20
	os.WriteFile(path, b, 0o600)
	check("flipped byte", path, key, StatusInvalid, "differs from its signed manifest")

	path = record(key)
	var m map[string]any
	mb, _ := os.ReadFile(path + ManifestSuffix)
	json.Unmarshal(mb, &m)
	m["end"] = time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)
	mb, _ = json.Marshal(m)
	os.WriteFile(path+ManifestSuffix, mb, 0o600)
	check("changed manifest", path, key, StatusInvalid, "does not verify")

	path = record(nil)
	check("unsigned", path, key, StatusInvalid, "not signed")

	path = record(key)
	os.Remove(path + ManifestSuffix)
	b, _ = os.ReadFile(path)
	os.WriteFile(path, append(b, `[9.5, "o", "torn`...), 0o600)
	check("no manifest", path, key, StatusIncomplete, "cut short")
	f, _ := os.Open(path)
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := rd.Next(); err != nil || e.Data != "login: root\r\n" {
		t.Fatalf("first event %+v %v", e, err)
	}
	if _, err := rd.Next(); err != io.EOF || !rd.Truncated {
		t.Fatalf("torn line: %v, truncated %v", err, rd.Truncated)
	}
}

// TestKeyFiles: keygen writes a 0600 private key and a public key it
// does not overwrite; a private key others may read is refused.
func TestKeyFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pem")
	k, err := GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v", fi.Mode())
	}
	if _, err := GenerateKey(path); err == nil {
		t.Fatal("GenerateKey overwrote a key")
	}
	pub, err := LoadKey(PublicKeyPath(path))
	if err != nil || pub.Private != nil || !pub.Public.Equal(k.Public) || pub.ID() != k.ID() {
		t.Fatalf("public key: %v", err)
	}
	if _, err := LoadPrivateKey(PublicKeyPath(path)); err == nil {
		t.Fatal("a public key loaded as the signing key")
	}
	os.Chmod(path, 0o644)
	if _, err := LoadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key others may read: %v", err)
	}
}

// TestOpenRefuses: no directory, a kind not recordable, a directory
// gone: Open says why, in one line.
func TestOpenRefuses(t *testing.T) {
	s := testSession()
	if _, err := (&Recorder{}).Open(s); err == nil || !strings.Contains(err.Error(), "--record-dir") {
		t.Fatalf("no dir: %v", err)
	}
	s.Target.Kind = protocols.Kind("telnet")
	if _, err := (&Recorder{Dir: t.TempDir()}).Open(s); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("telnet: %v", err)
	}
	s.Target.Kind = protocols.KindSerial
	if _, err := (&Recorder{Dir: filepath.Join(t.TempDir(), "gone")}).Open(s); err == nil || !strings.Contains(err.Error(), "cannot create the recording") {
		t.Fatalf("gone: %v", err)
	}
	s.Target.Record = protocols.RecordRequired
	if p := (&Recorder{}).Policy(s); p != protocols.RecordRequired {
		t.Fatalf("the console's own policy is not kept: %q", p)
	}
}

// BenchmarkOutput is the recorder's cost per byte of console output.
func BenchmarkOutput(b *testing.B) {
	rec, err := (&Recorder{Dir: b.TempDir()}).Open(testSession())
	if err != nil {
		b.Fatal(err)
	}
	chunk := []byte(strings.Repeat("console output line\r\n", 200))
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		rec.Output(chunk)
	}
	rec.Close(testSession())
}
