package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// Error is a request the proxy refused before the websocket upgrade:
// the HTTP status and one-line reason it answers with, and the cause.
// ErrorHandler receives it.
type Error struct {
	// Status is the HTTP status, e.g. 404.
	Status int
	// Reason says what went wrong and, where it can, what to do, on one
	// line. It is safe to show the client: it never holds the token.
	Reason string
	// Err is the cause (e.g. resolver.ErrNotFound, a dial error), which
	// may say more than Reason; nil when Reason is all there is.
	Err error
}

func (e *Error) Error() string { return e.Reason }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func fail(status int, err error, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...), Err: err}
}

// refuse logs e and answers the request with ErrorHandler. The log is
// sampled per client address (at most 10 lines a minute each, then one
// saying the rest are left out, and the next line logged says how many
// were): one client repeating a refused request must not flood it.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, e *Error) {
	host := p.clientAddr(r)
	switch v := p.refusals.admit(host); {
	case v.log:
		attrs := []any{"status", e.Status, "reason", e.Reason}
		if e.Err != nil && e.Err.Error() != e.Reason {
			attrs = append(attrs, "err", e.Err)
		}
		if v.suppressed > 0 {
			attrs = append(attrs, "not_logged_before", v.suppressed)
		}
		log.Warn("request refused", attrs...)
	case v.quiet:
		log.Warn("too many refused requests from one client: the rest are not logged for a while", "client", host)
	}
	h := p.ErrorHandler
	if h == nil {
		h = writeError
	}
	h(w, r, e)
}

// writeError is the default ErrorHandler: the status and the reason as a
// one-line plain-text body (wsconn.Dial takes the body's first line as
// HandshakeError.Reason).
func writeError(w http.ResponseWriter, _ *http.Request, err error) {
	status, reason := http.StatusBadGateway, oneLine(err)
	if e := (*Error)(nil); errors.As(err, &e) {
		status, reason = e.Status, e.Reason
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, reason)
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
