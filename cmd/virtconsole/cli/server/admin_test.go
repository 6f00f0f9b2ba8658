package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// fakeSessions is a proxy with one live session, "0123456789abcdef".
type fakeSessions struct{ killedBy string }

func (f *fakeSessions) Sessions() []proxy.SessionInfo {
	return []proxy.SessionInfo{{ID: "0123456789abcdef", Kind: "vnc", Console: "127.0.0.1:5900", Client: "127.0.0.1:40000", Viewers: 1}}
}

func (f *fakeSessions) KillSession(id, by string) bool {
	if id != "0123456789abcdef" {
		return false
	}
	f.killedBy = by
	return true
}

func testPKI(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAdminAPI: the sessions API answers 401 without a client
// certificate and 403 with one from another CA, for every path and
// method, before anything else; an admin lists, ends a session (recorded
// as "admin" and the certificate's CN) and gets 404 for an unknown ID.
func TestAdminAPI(t *testing.T) {
	dir, other := testPKI(t), testPKI(t)
	fake := &fakeSessions{}
	d := &daemon{}
	opts := Admin{Listen: "127.0.0.1:0", ClientCA: filepath.Join(dir, "ca-cert.pem")}
	if err := opts.listener(d, fake, dir, tlscreds.DefaultPolicy(), testFactory(io.Discard).Logger()); err != nil {
		t.Fatal(err)
	}
	if len(d.sides) != 1 {
		t.Fatalf("sides %+v: want the admin listener", d.sides)
	}
	if cfg, err := d.sides[0].tls.GetConfigForClient(nil); err != nil || cfg.ClientAuth != tls.RequestClientCert {
		t.Fatalf("admin listener's TLS config %+v, %v: want it asking for client certificates", cfg, err)
	}
	if d.certs["admin listener credentials"] == nil {
		t.Fatal("the admin listener's credentials are not reloaded")
	}
	srv := httptest.NewUnstartedServer(d.sides[0].handler)
	srv.TLS = d.sides[0].tls
	srv.StartTLS()
	defer srv.Close()

	client := func(credsDir string) *http.Client {
		var creds *tlscreds.Creds
		var err error
		if credsDir != "" {
			creds, err = tlscreds.LoadClient(credsDir)
		} else {
			creds, err = tlscreds.LoadCAFile(filepath.Join(dir, "ca-cert.pem"))
		}
		if err != nil {
			t.Fatal(err)
		}
		cfg := creds.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1")
		cfg.RootCAs = mustCA(t, dir) // the server's certificate is dir's
		return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	}
	do := func(c *http.Client, method, path string) (int, string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	for _, tc := range []struct {
		name   string
		c      *http.Client
		status int
		reason string
	}{
		{"no certificate", client(""), http.StatusUnauthorized, "no client certificate"},
		{"another CA's certificate", client(other), http.StatusForbidden, "is not allowed"},
	} {
		for _, r := range [][2]string{{"GET", "/v1/sessions"}, {"DELETE", "/v1/sessions/0123456789abcdef"}, {"GET", "/nothing"}, {"POST", "/v1/sessions"}} {
			if status, body := do(tc.c, r[0], r[1]); status != tc.status || !strings.Contains(body, tc.reason) {
				t.Errorf("%s: %s %s: %d %q, want %d %q", tc.name, r[0], r[1], status, body, tc.status, tc.reason)
			}
		}
	}
	if fake.killedBy != "" {
		t.Fatalf("a refused request ended a session (by %q)", fake.killedBy)
	}

	admin := client(dir)
	status, body := do(admin, "GET", "/v1/sessions")
	var list []proxy.SessionInfo
	if status != http.StatusOK || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].ID != "0123456789abcdef" {
		t.Fatalf("GET /v1/sessions: %d %q", status, body)
	}
	if status, body := do(admin, "DELETE", "/v1/sessions/ffffffffffffffff"); status != http.StatusNotFound || !strings.Contains(body, "virtconsole sessions list") {
		t.Fatalf("DELETE unknown: %d %q, want 404", status, body)
	}
	if status, _ := do(admin, "DELETE", "/v1/sessions/0123456789abcdef"); status != http.StatusNoContent {
		t.Fatalf("DELETE: %d, want 204", status)
	}
	if fake.killedBy != "admin virtconsole client" {
		t.Fatalf("killed by %q, want the certificate's CN", fake.killedBy)
	}
}

func mustCA(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	ca, err := tlscreds.LoadCAFile(filepath.Join(dir, "ca-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return ca.CAs
}

// TestAdminFlags: --admin-listen needs --admin-client-ca and --tls-dir,
// and --admin-client-ca needs --admin-listen; each is a one-line usage
// error.
func TestAdminFlags(t *testing.T) {
	dir := testPKI(t)
	ca := filepath.Join(dir, "ca-cert.pem")
	for _, tc := range []struct {
		o      Admin
		tlsDir string
		want   string
	}{
		{Admin{Listen: "127.0.0.1:0"}, dir, "--admin-listen needs --admin-client-ca FILE"},
		{Admin{ClientCA: ca}, dir, "--admin-client-ca goes with --admin-listen"},
		{Admin{Listen: "127.0.0.1:0", ClientCA: ca}, "", "--admin-listen needs --tls-dir DIR"},
	} {
		err := tc.o.listener(&daemon{}, &fakeSessions{}, tc.tlsDir, tlscreds.DefaultPolicy(), testFactory(io.Discard).Logger())
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") || cmdutil.ExitCode(err) != cmdutil.ExitUsage {
			t.Errorf("%+v: %v (exit %d), want a usage error %q", tc.o, err, cmdutil.ExitCode(err), tc.want)
		}
	}
}

// TestAdminListenBusy: an admin address in use is a usage error naming
// --admin-listen, and the daemon does not start.
func TestAdminListenBusy(t *testing.T) {
	dir := testPKI(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d := &daemon{name: "test", addr: "127.0.0.1:0", handler: http.NotFoundHandler(), drainTimeout: time.Second}
	opts := Admin{Listen: busy.Addr().String(), ClientCA: filepath.Join(dir, "ca-cert.pem")}
	if err := opts.listener(d, &fakeSessions{}, dir, tlscreds.DefaultPolicy(), testFactory(io.Discard).Logger()); err != nil {
		t.Fatal(err)
	}
	err = d.serve(context.Background(), testFactory(io.Discard).Logger())
	if err == nil || !strings.Contains(err.Error(), "choose another --admin-listen address") || cmdutil.ExitCode(err) != cmdutil.ExitUsage {
		t.Fatalf("serve with a busy --admin-listen: %v (exit %d)", err, cmdutil.ExitCode(err))
	}
}
