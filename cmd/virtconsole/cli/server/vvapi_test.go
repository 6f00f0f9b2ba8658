package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// TestVVAPI: GET /v1/vv?domain=… answers the .vv file for the token
// libvirt (the fake) holds for the domain's SPICE console, with the
// gateway's description, as a download; what it cannot serve is a
// one-line reason with a 4xx/5xx status.
func TestVVAPI(t *testing.T) {
	h, tok := cmdtest.SPICEDomain(t, "myvm")
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // for its certificate
	defer srv.Close()
	gw := &proxy.ConnectGateway{Proxy: &proxy.Proxy{}, TLSConfig: func() *tls.Config { return srv.TLS }}

	f := testFactory(io.Discard)
	f.Libvirt = cmdtest.Libvirt(h)
	v := &vvMaker{f: f, uris: []string{"qemu:///system"}, gateway: func() *proxy.ConnectGateway { return gw }}
	get := func(v *vvMaker, query string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/v1/vv?"+query, nil)
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{CommonName: "alice"}}}}
		w := httptest.NewRecorder()
		adminHandler(&fakeSessions{}, nil, v, f.Logger()).ServeHTTP(w, r)
		return w
	}

	w := get(v, "domain=myvm&gateway=https://proxy.example:3128")
	info, _ := gw.Info(ctx, tok)
	gwURL := &url.URL{Scheme: "https", Host: "proxy.example:3128"}
	if want := info.VVFile(gwURL, tok, "myvm (release the cursor: shift+f12)"); w.Code != http.StatusOK || w.Body.String() != want {
		t.Fatalf("GET /v1/vv: %d\n%s\nwant:\n%s", w.Code, w.Body, want)
	}
	if ct, cd := w.Header().Get("Content-Type"), w.Header().Get("Content-Disposition"); ct != "application/x-virt-viewer" || !strings.HasPrefix(cd, "attachment") {
		t.Errorf("Content-Type %q, Content-Disposition %q", ct, cd)
	}
	if !strings.Contains(w.Body.String(), "proxy=https://virtconsole:"+proxy.EncodeConnectToken(tok)+"@proxy.example:3128\n") {
		t.Errorf("no proxy URL with the domain's token:\n%s", w.Body)
	}

	for _, tc := range []struct {
		name, query string
		v           *vvMaker
		status      int
		want        string
	}{
		{"no domain", "gateway=https://proxy.example:3128", v, 400, "give domain=NAME"},
		{"bad index", "domain=myvm&index=x&gateway=https://proxy.example:3128", v, 400, "want the SPICE device's number"},
		{"no gateway URL", "domain=myvm", v, 400, "gateway=no gateway"},
		{"gateway URL with a path", "domain=myvm&gateway=https://proxy.example:3128/x", v, 400, "want https://HOST:PORT"},
		{"unknown domain", "domain=nosuchvm&gateway=https://proxy.example:3128", v, 404, "nosuchvm"},
		{"no such device", "domain=myvm&index=1&gateway=https://proxy.example:3128", v, 404, "myvm"},
		{"not bundled", "domain=myvm&gateway=https://proxy.example:3128", &vvMaker{f: f, gateway: v.gateway}, 501, "reads no libvirt"},
		{"no gateway", "domain=myvm&gateway=https://proxy.example:3128", &vvMaker{f: f, uris: v.uris, gateway: func() *proxy.ConnectGateway { return nil }}, 404, "--spice-connect-listen"},
	} {
		w := get(tc.v, tc.query)
		body := strings.TrimSuffix(w.Body.String(), "\n")
		if w.Code != tc.status || !strings.Contains(body, tc.want) || strings.Contains(body, "\n") {
			t.Errorf("%s: %d %q, want %d and one line with %q", tc.name, w.Code, body, tc.status, tc.want)
		}
	}
}
