package sessions

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

var started = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// api serves a sessions API with one session, over TLS with dir's server
// certificate, asking for client certificates.
func api(t *testing.T, dir string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]proxy.SessionInfo{{ID: "3f46e0a823f092c8", Kind: "vnc", Domain: "myvm", Console: "127.0.0.1:5900",
			Client: "192.0.2.10:51234", Started: started, BytesToConsole: 213, BytesFromConsole: 18731, Viewers: 2,
			Connections: []proxy.Connection{{Role: protocols.RoleControl}, {Role: protocols.RoleView}}}})
	})
	mux.HandleFunc("DELETE /v1/sessions/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") != "3f46e0a823f092c8" {
			http.Error(w, `no live session "`+r.PathValue("id")+`"`, http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	creds, err := tlscreds.Load(dir, tlscreds.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = creds.ServerConfig(tlscreds.DefaultPolicy(), true)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &out, &bytes.Buffer{}))
	cmd := NewCmdSessions(f, nil)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

// TestListAndKill: the table, the JSON, a kill, and an unknown ID's 404
// as exit 7 with the server's reason.
func TestListAndKill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := api(t, dir)
	flags := []string{"--server", srv.URL, "--tls-dir", dir}

	out, err := execute(t, append([]string{"list"}, flags...)...)
	if err != nil {
		t.Fatal(err)
	}
	want := "ID                KIND  DOMAIN  CONSOLE         CLIENT            STARTED               TO CONSOLE  FROM CONSOLE  VIEWERS  ROLES\n" +
		"3f46e0a823f092c8  vnc   myvm    127.0.0.1:5900  192.0.2.10:51234  2026-12-01T10:00:00Z  213         18731         2        1 control, 1 view\n"
	if out != want {
		t.Fatalf("list:\n%s\nwant:\n%s", out, want)
	}

	out, err = execute(t, append([]string{"list", "--json"}, flags...)...)
	var list []proxy.SessionInfo
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "3f46e0a823f092c8" || !list[0].Started.Equal(started) {
		t.Fatalf("list --json: %v %q", err, out)
	}

	if out, err = execute(t, append([]string{"kill", "3f46e0a823f092c8"}, flags...)...); err != nil || out != "ended session 3f46e0a823f092c8\n" {
		t.Fatalf("kill: %v %q", err, out)
	}
	_, err = execute(t, append([]string{"kill", "ffffffffffffffff"}, flags...)...)
	if err == nil || cmdutil.ExitCode(err) != cmdutil.ExitNotFound || !strings.Contains(err.Error(), `404 no live session "ffffffffffffffff"`) {
		t.Fatalf("kill of an unknown ID: %v (exit %d), want exit 7 and the server's reason", err, cmdutil.ExitCode(err))
	}
}

// TestUnreachable: a server that does not answer is exit 3, on one line
// that names it without repeating the request.
func TestUnreachable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := api(t, dir)
	srv.Close() // its port now refuses connections
	_, err := execute(t, "list", "--server", srv.URL, "--tls-dir", dir)
	if err == nil || cmdutil.ExitCode(err) != cmdutil.ExitUnreachable || !strings.HasPrefix(err.Error(), "sessions API at "+strings.TrimPrefix(srv.URL, "https://")+": ") ||
		strings.Contains(err.Error(), "Get ") {
		t.Fatalf("list from a closed server: %v (exit %d)", err, cmdutil.ExitCode(err))
	}
}
