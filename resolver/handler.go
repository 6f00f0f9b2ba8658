package resolver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// Fingerprint returns a short, non-reversible identifier of token (the
// first 8 hex digits of its SHA-256) for logs that must tell requests
// apart without disclosing the token.
func Fingerprint(token string) string { return TokenID(token)[:8] }

// TokenID returns the identifier of token in audit records: the first 12
// hex digits of its SHA-256, long enough to tell a deployment's tokens
// apart and impossible to turn back into the token.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// NewHandler serves r over the REST API of the original
// libvirt-console-proxy:
//
//	GET …/token/<token>  200 the Console as JSON, 404 {"error":"unknown token"},
//	                     503 when r is unavailable, 400 for an empty token
//	GET …/healthz        200 "ok"
//
// It is agnostic of where it is mounted: the token is everything after the
// first path segment "token", e.g. /consoleresolver/token/<token> and
// /token/<token> (so the mount path must not have a segment "token"). The
// token may contain "/", "+" and "=", raw or percent-encoded (a client
// that escapes the whole token, as Client does, and one that sends it as
// is both work); "+" is a plus, not a space. Other methods than GET and
// HEAD get 405. Logs carry Fingerprint(token), never
// the token. A nil logger discards.
func NewHandler(r Resolver, logger *slog.Logger) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &handler{r: r, log: logger}
}

type handler struct {
	r   Resolver
	log *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	isToken, rawToken, ok := splitPath(req.URL.EscapedPath())
	if !ok {
		writeJSONError(w, http.StatusNotFound, "not found")
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSONError(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if !isToken {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("ok"))
		return
	}
	token, err := url.PathUnescape(rawToken)
	if err != nil {
		// The error would quote part of the token: do not pass it on.
		writeJSONError(w, http.StatusBadRequest, "malformed escape in token")
		return
	}
	if token == "" {
		writeJSONError(w, http.StatusBadRequest, "empty token")
		return
	}

	fp := Fingerprint(token)
	t, err := h.r.Resolve(req.Context(), token)
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		h.log.Info("unknown token", "token_fp", fp, "remote", req.RemoteAddr)
		writeJSONError(w, http.StatusNotFound, "unknown token")
		return
	case errors.Is(err, ErrUnavailable):
		h.log.Warn("resolver unavailable", "token_fp", fp, "remote", req.RemoteAddr,
			"error", scrub(err.Error(), token))
		writeJSONError(w, http.StatusServiceUnavailable, "resolver unavailable")
		return
	case errors.Is(err, ErrUnsupported):
		h.log.Warn("token names a console this resolver cannot serve", "token_fp", fp, "remote", req.RemoteAddr,
			"error", scrub(err.Error(), token))
		writeJSONError(w, http.StatusNotImplemented, scrub(err.Error(), token))
		return
	default:
		if req.Context().Err() != nil {
			// The client went away; nobody reads the answer.
			h.log.Debug("token request cancelled", "token_fp", fp, "remote", req.RemoteAddr)
			return
		}
		h.log.Error("resolving token failed", "token_fp", fp, "remote", req.RemoteAddr,
			"error", scrub(err.Error(), token))
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}

	body, err := json.Marshal(FromTarget(t))
	if err != nil {
		h.log.Error("encoding console failed", "token_fp", fp, "error", err.Error())
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	h.log.Info("token resolved", "token_fp", fp, "remote", req.RemoteAddr, "target", t.String())
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store") // the answer may hold a password
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// splitPath classifies an escaped request path. A token request has a
// segment "token": the token is everything after the first such segment
// and its slash, still path-escaped, slashes included (tokens may contain
// "/", raw or as %2F); "…/token" alone has an empty token. Otherwise a
// path whose last segment is "healthz" is the health check, and any other
// path is not ours (ok false).
func splitPath(escaped string) (isToken bool, rawToken string, ok bool) {
	p := "/" + strings.TrimPrefix(escaped, "/")
	if i := strings.Index(p, "/token/"); i >= 0 {
		return true, p[i+len("/token/"):], true
	}
	if strings.HasSuffix(p, "/token") {
		return true, "", true
	}
	return false, "", strings.HasSuffix(p, "/healthz")
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(body)
}
