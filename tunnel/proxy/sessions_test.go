package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Sessions lists the live sessions; KillSession ends one by its ID, the
// viewer reads 4002 and the reason, the log says who, and the others go on.
func TestSessionsAndKillSession(t *testing.T) {
	addr := echoServer(t)
	p, srv, logs := newProxy(t, map[string]resolver.Console{
		"a": {Type: "serial", Address: addr, Insecure: true},
		"b": {Type: "console", Address: addr, Insecure: true},
	})
	if got := p.Sessions(); len(got) != 0 {
		t.Fatalf("Sessions() = %v before any session", got)
	}
	gone, err := dial(t, wsURL(srv), bearer("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer gone.Close()
	wantEcho(t, gone)
	kept, err := dial(t, wsURL(srv), bearer("b"))
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	wantEcho(t, kept)
	waitActive(t, p, 2)

	// The counters are added to once a write has returned, which can
	// be after the viewer has read the echo.
	var list []SessionInfo
	deadline := time.Now().Add(10 * time.Second)
	for list = p.Sessions(); len(list) != 2 || list[0].BytesToConsole == 0 || list[0].BytesFromConsole == 0; list = p.Sessions() {
		if time.Now().After(deadline) {
			t.Fatalf("Sessions() = %+v, want 2, the first with bytes both ways", list)
		}
		time.Sleep(time.Millisecond)
	}
	s := list[0]
	if s.Kind != "serial" || list[1].Kind != "console" {
		t.Fatalf("kinds %q, %q: want serial then console (oldest first)", s.Kind, list[1].Kind)
	}
	if len(s.ID) != 16 || s.Console != addr || s.Client == "" || s.Started.IsZero() || s.Viewers != 1 ||
		s.BytesToConsole == 0 || s.BytesFromConsole == 0 {
		t.Fatalf("session %+v: want an ID, the console, the client, a start time, 1 viewer and bytes both ways", s)
	}

	if p.KillSession("0123456789abcdef", "admin alice") {
		t.Fatal("KillSession of an unknown ID reported true")
	}
	if !p.KillSession(s.ID, "admin alice") {
		t.Fatal("KillSession of a live session reported false")
	}
	_, pc := readEnd(t, gone)
	if pc == nil || pc.Code != wsconn.CloseEndedByAdmin || pc.Reason != "session ended by an administrator" {
		t.Fatalf("close frame %v, want 4002 session ended by an administrator", pc)
	}
	waitActive(t, p, 1)
	wantEcho(t, kept)
	if got := p.Sessions(); len(got) != 1 || got[0].ID != list[1].ID {
		t.Fatalf("Sessions() after the kill = %+v, want only %s", got, list[1].ID)
	}
	if p.KillSession(s.ID, "admin alice") {
		t.Fatal("KillSession of an ended session reported true")
	}
	if !strings.Contains(logs.String(), `ended_by="admin alice"`) {
		t.Fatalf("no ended_by in the log:\n%s", logs.String())
	}
}
