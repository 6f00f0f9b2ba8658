package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

func readEvents(t *testing.T, path string) []Event {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var e Event
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		events = append(events, e)
	}
	return events
}

func session() *proxy.Session {
	s := &proxy.Session{
		ID:      "0123456789abcdef",
		Time:    time.Date(2026, 12, 1, 10, 0, 0, 0, time.FixedZone("x", 3600)),
		Client:  proxy.Client{Addr: "192.0.2.1:5000", ForwardedFor: "198.51.100.7", CertSubject: "CN=alice"},
		TokenID: resolver.TokenID("s3cret-token"),
		Target:  proxy.TargetInfo{Kind: protocols.KindVNC, Address: "127.0.0.1:5900", Domain: "web1", DomainUUID: "c7a5fdbd-edaf-9455-926a-d65c16db1809"},
		Setup:   20 * time.Millisecond,
		Role:    protocols.RoleView,
	}
	return s
}

// Open appends to an existing file (creating it 0600), each event is one
// JSON line with the documented fields, a killed session gets a
// session_killed line before its session_end, and Reopen after a rename
// writes to a new file by the old name.
func TestLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode())
	}
	l.Refused(&proxy.Refusal{Time: time.Now(), Client: proxy.Client{Addr: "192.0.2.1:5001"}, Status: 404, Reason: "unknown token", TokenID: resolver.TokenID("bad")})
	s := session()
	l.SessionStart(s)
	s.BytesToConsole.Add(12)
	s.BytesFromConsole.Add(3400)
	s.Duration, s.Outcome, s.Reason, s.KilledBy = 2*time.Second, proxy.EndKilled, "ended by the proxy: token revoked", proxy.KilledByRevoke
	l.SessionEnd(s)
	l.Close()

	// Reopened: appends.
	l, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	failed := session()
	failed.StartErr, failed.Reason = errors.New("no common security type"), "no common security type"
	l.SessionStart(failed)

	ev := readEvents(t, path)
	var names []string
	for _, e := range ev {
		names = append(names, e.Event)
	}
	if got := strings.Join(names, " "); got != "refusal session_start session_killed session_end session_start" {
		t.Fatalf("events %s", got)
	}
	if r := ev[0]; r.Status != 404 || r.Reason != "unknown token" || r.TokenID != resolver.TokenID("bad") || len(r.TokenID) != 12 || r.Client != "192.0.2.1:5001" {
		t.Errorf("refusal %+v", r)
	}
	if st := ev[1]; st.SessionID != s.ID || st.Kind != "vnc" || st.Domain != "web1" || st.DomainUUID == "" || st.Console != "127.0.0.1:5900" ||
		st.ForwardedFor != "198.51.100.7" || st.ClientCert != "CN=alice" || st.Outcome != "ok" || *st.SetupSeconds != 0.02 || st.Time.Location() != time.UTC || st.Role != "view" {
		t.Errorf("start %+v", st)
	}
	if k := ev[2]; k.KilledBy != "token revoked" || k.SessionID != s.ID {
		t.Errorf("killed %+v", k)
	}
	if e := ev[3]; *e.DurationSeconds != 2 || *e.BytesToConsole != 12 || *e.BytesFromConsole != 3400 || e.Outcome != "killed" ||
		!e.Time.Equal(s.Time.Add(2*time.Second)) {
		t.Errorf("end %+v", e)
	}
	if f := ev[4]; f.Outcome != "failed" || f.Reason != "no common security type" {
		t.Errorf("failed start %+v", f)
	}

	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.Refused(&proxy.Refusal{Status: 502, Target: proxy.TargetInfo{Kind: protocols.KindSerial, Address: "127.0.0.1:4555", Domain: "web1"}})
	l.Close()
	if ev := readEvents(t, path); len(ev) != 1 || ev[0].Kind != "serial" || ev[0].Console != "127.0.0.1:4555" || ev[0].Domain != "web1" {
		t.Fatalf("events in the new file %+v, want one refusal naming its console", ev)
	}
	if n := len(readEvents(t, path+".1")); n != 5 {
		t.Fatalf("%d events in the rotated file, want 5", n)
	}
	raw, _ := os.ReadFile(path + ".1")
	if strings.Contains(string(raw), "s3cret-token") {
		t.Fatal("the token is in the audit log")
	}
}

// Open says what to do when the file cannot be created; a write failure
// is logged once until a write succeeds again.
func TestErrors(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "no", "such", "dir", "audit.log"), nil)
	if err == nil || !strings.Contains(err.Error(), "directory exists") || strings.Count(err.Error(), "\n") > 0 {
		t.Fatalf("Open in a missing directory: %v", err)
	}
	var logs bytes.Buffer
	l := &Log{w: failingWriter{}, errLog: slog.New(slog.NewTextHandler(&logs, nil))}
	l.Refused(&proxy.Refusal{Status: 404})
	l.Refused(&proxy.Refusal{Status: 404})
	if n := strings.Count(logs.String(), "audit log write failed"); n != 1 {
		t.Fatalf("%d failure lines, want 1:\n%s", n, logs.String())
	}
	if err := l.Reopen(); err != nil {
		t.Fatalf("Reopen of a log that is not a file: %v", err)
	}
	stdout, err := Open("-", nil)
	if err != nil || stdout.Reopen() != nil || stdout.Close() != nil {
		t.Fatalf("standard output: %v", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
