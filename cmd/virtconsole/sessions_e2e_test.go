package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

var adminListeningRE = regexp.MustCompile(`admin listening" address=https://(\S+)/v1/sessions`)

// The tokens of TestSessionsListAndKill: none may appear in any output.
const (
	sessVNCToken    = "Sessions-VNC-Token-4b1d"
	sessSerialToken = "Sessions-Serial-Token-e07a"
)

// TestSessionsListAndKill runs the README's "virtconsole sessions"
// commands, as written there but for addresses, paths and the session ID,
// against the built proxy and real QEMU: "sessions list" shows the live
// VNC sessions (one through "virtconsole vnc --once", one a websocket of the
// test's own) and a serial one; "sessions kill" ends each: the websocket
// reads close 4002 and the reason, "virtconsole vnc" and "virtconsole
// serial" print the reason and exit 5, and the audit log says which
// administrator. Without a client certificate the API answers 401, with
// one from another CA 403, and an ID no longer live exits 7.
func TestSessionsListAndKill(t *testing.T) {
	qemutest.Require(t)
	dir := pki(t)
	_, vncAddr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	_, serialAddr := qemutest.StartSerial(t, qemutest.SerialOptions{TLSDir: dir, VerifyPeer: true, Monitor: true})
	tokens := writeTokens(t, map[string]resolver.Console{
		sessVNCToken:    {Type: "vnc", Address: vncAddr},
		sessSerialToken: {Type: "console", Address: serialAddr},
	})
	auditPath := filepath.Join(t.TempDir(), "audit.log")

	lines := readmeSubsection(t, "virtconsole sessions")
	if len(lines) != 4 {
		t.Fatalf("README's virtconsole sessions block has %d commands, want the server, list, list --json and kill:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	// args turns a README line into the binary's arguments, with the
	// test's addresses, paths and session ID.
	var adminAddr, id string
	args := func(line string) []string {
		line = strings.ReplaceAll(line, "\\\n", " ")
		line = strings.NewReplacer("127.0.0.1:6443", "127.0.0.1:0", "--admin-listen 127.0.0.1:6444", "--admin-listen 127.0.0.1:0",
			"https://127.0.0.1:6444", "https://"+adminAddr, "./pki", dir, "tokens.json", tokens, "3f46e0a823f092c8", id).Replace(line)
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "virtconsole" {
			t.Fatalf("README line %q does not run virtconsole", line)
		}
		return f[1:]
	}
	p := startDaemon(t, append(args(lines[0]), "--audit-log", auditPath)...)
	adminAddr = adminAddrOf(t, p)
	ca := filepath.Join(dir, "ca-cert.pem")

	// Three sessions: "virtconsole vnc" with an RFB viewer at its port,
	// the test's own websocket, and "virtconsole serial" on QEMU's monitor.
	// --once: without it "virtconsole vnc" prints the viewer's end and
	// goes on serving its port.
	vnc := startVNC(t, "--once", "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, sessVNCToken))
	if name, _, _, reason, _ := rfbViewer(t, vnc.port); name != "QEMU" {
		t.Fatalf("through virtconsole vnc: ServerInit name %q, reason %q", name, reason)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+sessVNCToken)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ws, err := wsconn.Dial(ctx, "wss://"+p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: clientTLS(t, ca), Subprotocols: []string{"binary"}})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if name, _, _, reason := rfbHandshake(t, ws); name != "QEMU" {
		t.Fatalf("own websocket: ServerInit name %q, reason %q", name, reason)
	}
	serial := startSerial(t, "--proxy", "wss://"+p.addr, "--ca-file", ca, "--token-file", writeToken(t, sessSerialToken))
	waitFor(t, 30*time.Second, "the monitor prompt", func() bool { return strings.Contains(serial.out.String(), "(qemu)") })

	// The table, then the JSON.
	r := run(t, nil, args(lines[1])...)
	if r.code != 0 {
		t.Fatalf("sessions list: exit %d: %s", r.code, r.stderr)
	}
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(rows) != 4 || !strings.HasPrefix(rows[0], "ID ") || strings.Count(r.stdout, " vnc ") != 2 || strings.Count(r.stdout, " console ") != 1 {
		t.Fatalf("sessions list: want a header, two vnc and one console session:\n%s", r.stdout)
	}
	r = run(t, nil, args(lines[2])...)
	var list []proxy.SessionInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil || len(list) != 3 {
		t.Fatalf("sessions list --json: exit %d, %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	var wsID, vncID, serialID string
	for _, s := range list {
		if len(s.ID) != 16 || !strings.Contains(rows[1]+rows[2]+rows[3], s.ID) || s.Console == "" || s.Started.IsZero() || s.Viewers != 1 {
			t.Errorf("session %+v: want an ID (as in the table), console, start time and 1 viewer", s)
		}
		switch {
		case s.Kind == "console":
			serialID = s.ID
		case s.Kind == "vnc" && s.Client == ws.LocalAddr().String():
			wsID = s.ID
		case s.Kind == "vnc":
			vncID = s.ID
		}
		if s.Kind == "vnc" && s.BytesFromConsole < int64(24+len("QEMU")) {
			t.Errorf("session %s: %d bytes from the console, want at least QEMU's ServerInit", s.ID, s.BytesFromConsole)
		}
	}
	if wsID == "" || vncID == "" || serialID == "" {
		t.Fatalf("sessions %+v: cannot tell the websocket's (client %s), virtconsole vnc's and the serial one", list, ws.LocalAddr())
	}

	// No client certificate: the API answers 401; "virtconsole sessions"
	// does not even ask without one (exit 4, saying what to add).
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, ca)}, Timeout: 10 * time.Second}).Get("https://" + adminAddr + "/v1/sessions")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "no client certificate") {
		t.Fatalf("without a client certificate: %d %q, want 401", resp.StatusCode, body)
	}
	id = wsID
	noCert := filepath.Join(t.TempDir(), "nocert")
	os.MkdirAll(noCert, 0o700)
	copyFile(t, ca, filepath.Join(noCert, "ca-cert.pem"))
	r = run(t, nil, append(args(lines[3]), "--tls-dir", noCert)...)
	if r.code != cmdutil.ExitTLS || !strings.Contains(r.stderr, "requires a client certificate") {
		t.Fatalf("kill without a client certificate: exit %d, stderr %q; want 4 and what to add", r.code, r.stderr)
	}
	// One from another CA: 403.
	other := pki(t)
	cfg := clientTLS(t, ca)
	cert, err := tls.LoadX509KeyPair(filepath.Join(other, "client-cert.pem"), filepath.Join(other, "client-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	req, _ := http.NewRequest(http.MethodDelete, "https://"+adminAddr+"/v1/sessions/"+wsID, nil)
	resp, err = (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "is not allowed") {
		t.Fatalf("with another CA's client certificate: %d %q, want 403", resp.StatusCode, body)
	}

	// The websocket: close 4002 with the reason.
	r = run(t, nil, args(lines[3])...)
	if r.code != 0 || !strings.Contains(r.stdout, wsID) {
		t.Fatalf("sessions kill %s: exit %d, %q %q", wsID, r.code, r.stdout, r.stderr)
	}
	ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	io.Copy(io.Discard, ws)
	if pc := ws.(*wsconn.Conn).PeerClose(); pc == nil || pc.Code != wsconn.CloseEndedByAdmin || pc.Reason != "session ended by an administrator" {
		t.Fatalf("the killed websocket's close frame: %v, want 4002 session ended by an administrator", pc)
	}

	// virtconsole vnc and virtconsole serial print the reason, exit 5.
	for _, c := range []struct {
		name, id string
		cl       *client
	}{{"vnc", vncID, vnc.client}, {"serial", serialID, serial}} {
		id = c.id
		if r := run(t, nil, args(lines[3])...); r.code != 0 {
			t.Fatalf("sessions kill %s (%s): exit %d: %s", id, c.name, r.code, r.stderr)
		}
		if code := c.cl.wait(t, 30*time.Second); code != cmdutil.ExitLost || !strings.Contains(c.cl.errb.String(), "session ended by an administrator (websocket close 4002)") {
			t.Fatalf("virtconsole %s after the kill: exit %d, stderr %q; want 5 and the reason", c.name, code, c.cl.errb.String())
		}
	}

	// Nothing is left; an ID no longer live exits 7.
	waitFor(t, 10*time.Second, "no live sessions", func() bool {
		r := run(t, nil, args(lines[1])...)
		return r.code == 0 && strings.TrimSpace(r.stdout) == "no live sessions"
	})
	if r := run(t, nil, args(lines[3])...); r.code != cmdutil.ExitNotFound || !strings.Contains(r.stderr, "404") {
		t.Fatalf("kill of an ended session: exit %d, stderr %q; want 7 and 404", r.code, r.stderr)
	}

	killed := map[string]string{}
	for _, e := range readAudit(t, auditPath) {
		if str(e["event"]) == "session_killed" {
			killed[str(e["session_id"])] = str(e["killed_by"])
		}
	}
	for _, sid := range []string{wsID, vncID, serialID} {
		if killed[sid] != "admin virtconsole client" {
			t.Errorf("audit: session %s killed_by %q, want \"admin virtconsole client\" (all: %v)", sid, killed[sid], killed)
		}
	}
	audit, _ := os.ReadFile(auditPath)
	for _, tok := range []string{sessVNCToken, sessSerialToken} {
		if strings.Contains(p.log.String(), tok) || strings.Contains(string(audit), tok) {
			t.Fatalf("token %s in the log or the audit log", tok)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// adminAddrOf returns the address of d's admin listener, from its log.
func adminAddrOf(t *testing.T, d *daemon) string {
	t.Helper()
	return loggedAddr(t, d, adminListeningRE, "the admin listening line")
}

// TestSessionsSPICE: a SPICE session's channels are one session in
// "sessions list" (viewers 2), and "sessions kill" ends them all. The
// administrator's certificate comes from a CA of its own
// (--admin-client-ca), and its --tls-dir's ca-cert.pem holds both CAs.
func TestSessionsSPICE(t *testing.T) {
	admin := pki(t)
	const token = "Sessions-SPICE-Token-3c9e"
	b := startSPICEBed(t, "", map[string]string{token: ""}, "--admin-listen", "127.0.0.1:0", "--admin-client-ca", filepath.Join(admin, "ca-cert.pem"))
	server := "https://" + adminAddrOf(t, b.p)
	v := b.client(t, token)
	main, display := scriptedSession(t, v.port, "")

	tlsDir := filepath.Join(t.TempDir(), "admin")
	os.MkdirAll(tlsDir, 0o700)
	copyFile(t, filepath.Join(admin, "client-cert.pem"), filepath.Join(tlsDir, "client-cert.pem"))
	copyFile(t, filepath.Join(admin, "client-key.pem"), filepath.Join(tlsDir, "client-key.pem"))
	proxyCA, err := os.ReadFile(b.ca)
	if err != nil {
		t.Fatal(err)
	}
	adminCA, err := os.ReadFile(filepath.Join(admin, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tlsDir, "ca-cert.pem"), append(proxyCA, adminCA...), 0o600); err != nil {
		t.Fatal(err)
	}

	r := run(t, nil, "sessions", "list", "--server", server, "--tls-dir", tlsDir, "--json")
	var list []proxy.SessionInfo
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
		t.Fatalf("sessions list --json: exit %d, %q, stderr %s", r.code, r.stdout, r.stderr)
	}
	if len(list) != 1 || list[0].Kind != "spice" || list[0].Viewers != 2 || list[0].SPICESession == "" || list[0].BytesFromConsole == 0 {
		t.Fatalf("sessions %+v: want one SPICE session of 2 viewers (main and display) with bytes from the console", list)
	}
	if r := run(t, nil, "sessions", "kill", list[0].ID, "--server", server, "--tls-dir", tlsDir); r.code != 0 {
		t.Fatalf("sessions kill: exit %d: %s", r.code, r.stderr)
	}
	for name, c := range map[string]interface{ Done() <-chan struct{} }{"main": main, "display": display} {
		select {
		case <-c.Done():
		case <-time.After(20 * time.Second):
			t.Fatalf("the %s channel goes on after the kill", name)
		}
	}
	// Both channels end by the administrator's hand in the proxy's log;
	// the local listener says so for each channel whose close frame came
	// before its viewer hung up (the scripted viewer may close one
	// channel of a session the other ended: under load it sometimes
	// does, and a viewer that leaves is no lost session).
	waitFor(t, 10*time.Second, "both channels' ends, by the administrator", func() bool {
		return strings.Count(b.p.log.String(), `ended_by="admin virtconsole client"`) == 2 &&
			strings.Count(v.errb.String(), "session ended by an administrator (websocket close 4002)") >= 1
	})
	if n := strings.Count(v.errb.String(), "virtconsole: viewer "); n != strings.Count(v.errb.String(), "session ended by an administrator (websocket close 4002)") {
		t.Fatalf("the local listener reported something else than the administrator's end:\n%s", v.errb.String())
	}
	if r := run(t, nil, "sessions", "list", "--server", server, "--tls-dir", tlsDir); r.code != 0 || strings.TrimSpace(r.stdout) != "no live sessions" {
		t.Fatalf("sessions list after the kill: exit %d, %q", r.code, r.stdout)
	}
}
