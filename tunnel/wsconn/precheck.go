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
// would refuse r for not being a well-formed websocket upgrade (Upgrade
// runs it first): method GET, Connection: upgrade, Upgrade: websocket,
// Sec-WebSocket-Version 13, a Sec-WebSocket-Key of 16 base64 bytes (RFC
// 6455, section 4.2.1); not the origin, which callers check themselves. It
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

// headerHasToken reports whether a comma-separated header lists token,
// as gorilla/websocket parses it, which the tests' reference peers use
// (RFC 7230 tokens, ASCII case folding only, and a value with anything
// but tokens, spaces and commas ignored from there on).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for {
			v = strings.TrimLeft(v, " \t")
			i := 0
			for i < len(v) && isTokenChar(v[i]) {
				i++
			}
			t := v[:i]
			v = strings.TrimLeft(v[i:], " \t")
			if t == "" || v != "" && v[0] != ',' {
				break // the rest of this value is not a token list
			}
			if asciiEqualFold(t, token) {
				return true
			}
			if v == "" {
				break
			}
			v = v[1:]
		}
	}
	return false
}

// isTokenChar reports whether c is an RFC 7230 tchar.
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func validKey(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return s != "" && err == nil && len(b) == 16
}
