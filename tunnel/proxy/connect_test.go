package proxy

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestConnectToken(t *testing.T) {
	tok := "a:b@c/d+e=f"
	req := func(h string) *http.Request {
		r := httptest.NewRequest(http.MethodConnect, "http://"+ConnectTarget, nil)
		r.Method = http.MethodConnect
		if h != "" {
			r.Header.Set("Proxy-Authorization", h)
		}
		return r
	}
	basic := func(userpass string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass)) }
	for _, tc := range []struct{ header, want string }{
		{basic(ConnectUser + ":" + EncodeConnectToken(tok)), tok},
		{basic("anyone:" + base64.URLEncoding.EncodeToString([]byte(tok))), tok}, // padded
		{"basic " + base64.StdEncoding.EncodeToString([]byte("u:"+EncodeConnectToken(tok))), tok},
		{basic(ConnectUser + ":" + tok), ""}, // not base64url
		{basic("no-colon"), ""},
		{"Bearer " + tok, ""},
		{"Basic !!!", ""},
		{"", ""},
	} {
		r := req(tc.header)
		if got := ConnectToken(r); got != tc.want {
			t.Errorf("ConnectToken(%q) = %q, want %q", tc.header, got, tc.want)
		}
		if got := Token(r); got != tc.want {
			t.Errorf("Token of a CONNECT with %q = %q, want %q", tc.header, got, tc.want)
		}
	}
	// A websocket request's Proxy-Authorization is not its token.
	r := httptest.NewRequest(http.MethodGet, "/websockify", nil)
	r.Header.Set("Proxy-Authorization", basic("u:"+EncodeConnectToken(tok)))
	if got := Token(r); got != "" {
		t.Errorf("Token of a GET with Proxy-Authorization = %q", got)
	}
}

func TestIsConnectTarget(t *testing.T) {
	for hp, want := range map[string]bool{
		ConnectTarget:                         true,
		"CONSOLE.virtconsole.invalid:5901":    true,
		"console.virtconsole.invalid.:5901":   true,
		"console.virtconsole.invalid:5900":    false,
		"console.virtconsole.invalid":         false,
		"127.0.0.1:5901":                      false,
		"evil.console.virtconsole.invalid:59": false,
		"example.com:443":                     false,
	} {
		if got := isConnectTarget(hp); got != want {
			t.Errorf("isConnectTarget(%q) = %v", hp, got)
		}
	}
}

// TestSPICESubject: the DER order (not RFC 2253's reversed one), with ','
// and '\' escaped, as spice-gtk's host-subject parser wants.
func TestSPICESubject(t *testing.T) {
	name := pkix.Name{Country: []string{"IL"}, Organization: []string{"Red Hat, Inc."}, CommonName: `my\server`}
	raw, err := asn1.Marshal(name.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	got, err := SPICESubject(raw)
	want := `C=IL, O=Red Hat\, Inc., CN=my\\server`
	if err != nil || got != want {
		t.Errorf("SPICESubject = %q, %v; want %q", got, err, want)
	}
	if _, err := SPICESubject([]byte{1, 2, 3}); err == nil {
		t.Error("SPICESubject of garbage: no error")
	}
}
