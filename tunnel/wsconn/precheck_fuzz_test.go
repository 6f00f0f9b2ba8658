package wsconn

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzCheckUpgrade feeds upgrade requests with fuzzed method and
// handshake headers to CheckUpgrade and to Upgrade: CheckUpgrade must
// refuse exactly what Upgrade refuses, with the same status, or the
// proxy would spend a single-use token (or dial a console) for a request
// that Upgrade then refuses. A header given as "" is left out; a second
// Connection value is added when not "". testdata/fuzz holds the
// requests CheckUpgrade once passed and Upgrade refused.
func FuzzCheckUpgrade(f *testing.F) {
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	for _, s := range [][6]string{
		{"GET", "keep-alive, Upgrade", "", "websocket", "13", key},
		{"GET", "Upgrade", "", "WebSocket", "8, 13", key},
		{"GET", "keep-alive", "upgrade", "websocket", "13", key},
		{"GET", "upgrade;q=1", "", "websocket", "13", key},
		{"GET", `"upgrade"`, "", "websocket", " 13 ", key},
		{"POST", "Upgrade", "", "websocket", "13", key},
		{"GET", "Upgrade", "", "h2c", "13", key},
		{"GET", "Upgrade", "", "websocket", "13", "c2hvcnQ="},
		{"GET", "Upgrade", "", "websocket", "13", "dGhlIHNhbXBsZSBub25jZQ"},
		{"GET", "Upgrade", "", "websocket", "13", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4], s[5])
	}
	f.Fuzz(func(t *testing.T, method, connection, connection2, upgrade, version, key string) {
		if len(method+connection+connection2+upgrade+version+key) > 4096 {
			return // a handshake's headers are small; MaxHeaderBytes bounds them
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method = method
		set := func(name, v string) {
			if v != "" {
				r.Header.Add(name, v)
			}
		}
		set("Connection", connection)
		set("Connection", connection2)
		set("Upgrade", upgrade)
		set("Sec-WebSocket-Version", version)
		set("Sec-WebSocket-Key", key)

		err := CheckUpgrade(r)
		// httptest.ResponseRecorder cannot be hijacked: Upgrade answers
		// 500 once every check has passed.
		w := httptest.NewRecorder()
		if _, uerr := Upgrade(w, r, nil); uerr == nil {
			t.Fatal("Upgrade succeeded on a recorder")
		}
		if err == nil {
			if w.Code != http.StatusInternalServerError {
				t.Fatalf("CheckUpgrade passed, Upgrade answered %d", w.Code)
			}
			return
		}
		var ue *UpgradeError
		if !errors.As(err, &ue) || ue.Status != w.Code {
			t.Fatalf("CheckUpgrade = %v, Upgrade answered %d", err, w.Code)
		}
	})
}
