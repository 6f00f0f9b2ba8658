package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/grant"
	"github.com/virtconsole/virtconsole/tunnel/proxy/audit"
)

// TestMintGrant: POST /v1/grants mints a grant whose minter is the
// admin's CN and records grant_minted (never the grant) in the audit
// log; a bad request is 400, and a proxy without a key answers 404.
func TestMintGrant(t *testing.T) {
	key, err := grant.NewKey(bytes.Repeat([]byte{3}, grant.MinKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	al, err := audit.Open(auditPath, testFactory(io.Discard).Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	post := func(g *granter, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/grants", strings.NewReader(body))
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "alice"}}}}
		w := httptest.NewRecorder()
		adminHandler(&fakeSessions{}, g, nil, testFactory(io.Discard).Logger()).ServeHTTP(w, r)
		return w
	}
	g := &granter{key: key, audit: al}
	w := post(g, `{"session":"0123456789abcdef","role":"view","ttl":"15m"}`)
	var res GrantResponse
	if w.Code != http.StatusCreated || json.Unmarshal(w.Body.Bytes(), &res) != nil {
		t.Fatalf("POST: %d %q", w.Code, w.Body)
	}
	c, err := key.Verify(res.Grant, time.Now())
	if err != nil || c.By != "alice" || c.Session != "0123456789abcdef" || c.Role != protocols.RoleView || c.JTI != res.JTI {
		t.Fatalf("minted %+v, %v", c, err)
	}
	b, _ := os.ReadFile(auditPath)
	if !strings.Contains(string(b), `"event":"grant_minted"`) || !strings.Contains(string(b), `"by":"alice"`) || strings.Contains(string(b), res.Grant) {
		t.Fatalf("audit log %s", b)
	}
	for _, body := range []string{`nonsense`, `{"session":"x","role":"view","ttl":"soon"}`, `{"session":"x","role":"view","ttl":"48h"}`,
		`{"role":"view","ttl":"1m"}`, `{"session":"x","role":"root","ttl":"1m"}`} {
		if w := post(g, body); w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", body, w.Code, w.Body)
		}
	}
	if w := post(nil, `{"session":"x","role":"view","ttl":"1m"}`); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "--grant-key") {
		t.Fatalf("no key: %d %q", w.Code, w.Body)
	}
}
