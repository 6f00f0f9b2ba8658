package wsconn

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCheckUpgradeAgreesWithUpgrade checks that CheckUpgrade refuses
// exactly what Upgrade refuses, with the same status.
func TestCheckUpgradeAgreesWithUpgrade(t *testing.T) {
	good := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	cases := map[string]func(*http.Request){
		"good":          func(*http.Request) {},
		"no connection": func(r *http.Request) { r.Header.Del("Connection") },
		"no upgrade":    func(r *http.Request) { r.Header.Set("Upgrade", "h2c") },
		"post":          func(r *http.Request) { r.Method = http.MethodPost },
		"version 8":     func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") },
		"no key":        func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") },
		"short key":     func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") },
		"bad base64":    func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "not base64 at all!!!!!!!") },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			r := good()
			edit(r)
			err := CheckUpgrade(r)
			// httptest.ResponseRecorder cannot be hijacked: Upgrade
			// answers 500 once every check has passed.
			w := httptest.NewRecorder()
			_, uerr := Upgrade(w, r, nil)
			if uerr == nil {
				t.Fatal("Upgrade succeeded on a recorder")
			}
			if err == nil {
				if w.Code != http.StatusInternalServerError {
					t.Fatalf("CheckUpgrade passed, Upgrade answered %d (%v)", w.Code, uerr)
				}
				return
			}
			var ue *UpgradeError
			if !errors.As(err, &ue) || ue.Status != w.Code {
				t.Fatalf("CheckUpgrade = %v, Upgrade answered %d (%v)", err, w.Code, uerr)
			}
		})
	}
}
