package wsconn

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// UpgradeError is a request that Upgrade would refuse before taking the
// connection over: the HTTP status it would answer with and why.
type UpgradeError struct {
	Status int    // e.g. 400, 405
	Reason string // one line, safe to show the client
}

func (e *UpgradeError) Error() string { return e.Reason }

// CheckUpgrade reports, without answering the request, whether Upgrade
// would refuse r for not being a well-formed websocket upgrade: the
// checks of the websocket library (method GET, Connection: upgrade,
// Upgrade: websocket, Sec-WebSocket-Version 13, a Sec-WebSocket-Key of 16
// base64 bytes) except the origin, which callers check themselves. It
// lets a server do nothing costly or irreversible (dial a console, spend
// a single-use token) for a request that could not be upgraded anyway.
// The error is an *UpgradeError, nil when Upgrade would go ahead.
func CheckUpgrade(r *http.Request) error {
	switch {
	case !headerHasToken(r.Header, "Connection", "upgrade"):
		return upgradeErr(http.StatusBadRequest, "not a websocket upgrade: no %q token in the Connection header", "upgrade")
	case !headerHasToken(r.Header, "Upgrade", "websocket"):
		return upgradeErr(http.StatusBadRequest, "not a websocket upgrade: no %q token in the Upgrade header", "websocket")
	case r.Method != http.MethodGet:
		return upgradeErr(http.StatusMethodNotAllowed, "websocket upgrade with method %s; want GET", r.Method)
	case !headerHasToken(r.Header, "Sec-Websocket-Version", "13"):
		return upgradeErr(http.StatusBadRequest, "unsupported websocket version; want Sec-WebSocket-Version: 13")
	case !validKey(r.Header.Get("Sec-Websocket-Key")):
		return upgradeErr(http.StatusBadRequest, "bad websocket upgrade: Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return nil
}

func upgradeErr(status int, format string, args ...any) error {
	return &UpgradeError{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// headerHasToken reports whether a comma-separated header lists token
// (case-insensitively), as the websocket library matches them.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

func validKey(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return s != "" && err == nil && len(b) == 16
}
