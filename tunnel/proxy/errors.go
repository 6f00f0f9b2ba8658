package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
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

	target *protocols.Target // the console refused, for the Observer; nil when none
}

func (e *Error) Error() string { return e.Reason }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

func fail(status int, err error, format string, args ...any) *Error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...), Err: err}
}

// consoleFail is a 502 for a console the proxy could not use: what
// failed ("unreachable", "handshake failed", why it is not served), in
// words that hold no internal address: neither the console's address nor
// QEMU's IP nor the proxy's certificate paths reach the client. The
// cause, with the address, is Err, which the proxy logs.
func consoleFail(t protocols.Target, err error, what string) *Error {
	reason := "console " + what
	var he *protocols.HandshakeError
	switch {
	case errors.As(err, &he):
		// QEMU's own words (e.g. "Authentication failed"): documented as
		// safe to show, and they name no address.
		reason += ": " + oneLine(he)
	case isTLS(err):
		reason += ": TLS toward the console failed (the proxy's log says why)"
	}
	cause := fmt.Errorf("console %s", t.Address)
	if err != nil {
		cause = fmt.Errorf("console %s: %w", t.Address, err)
	}
	return &Error{Status: http.StatusBadGateway, Reason: reason, Err: cause, target: &t}
}

// isTLS reports whether err is a TLS failure (a certificate not trusted,
// an alert from QEMU) rather than the network's or the protocol's.
// crypto/tls's alerts have no exported type: their text says "tls: ".
func isTLS(err error) bool {
	var (
		verify  *tls.CertificateVerificationError
		record  tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	return err != nil && (errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &unknown) ||
		errors.As(err, &host) || errors.As(err, &invalid) || strings.Contains(err.Error(), "tls: "))
}

// withheld refuses a console whose address holds the token (a broken
// token file or resolver): such an address must not be dialled (its name
// would go to DNS), logged or shown. Tokens shorter than 8 bytes are not
// checked: they would match addresses by chance ("1" in "127.0.0.1").
func withheld(t protocols.Target, token string) *Error {
	if len(token) < 8 || !strings.Contains(t.Address, token) {
		return nil
	}
	return fail(http.StatusBadGateway, errors.New("the console address the resolver returned holds the token: fix the token file or the resolver"),
		"console address invalid")
}

// refuse logs e and answers the request with ErrorHandler. The log is
// sampled per client address (at most 10 lines a minute each, then one
// saying the rest are left out, and the next line logged says how many
// were): one client repeating a refused request must not flood it.
func (p *Proxy) refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, e *Error) {
	if r.Method == http.MethodConnect {
		e = connectRefusal(w, e)
	}
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
	ev := &Refusal{Time: time.Now(), Client: p.client(r), TokenID: tokenID(Token(r)), Status: e.Status, Reason: e.Reason}
	if e.target != nil {
		ev.Target = targetInfo(*e.target)
	}
	p.observer().Refused(ev)
	h := p.ErrorHandler
	if h == nil {
		h = WriteError
	}
	h(w, r, e)
}

// WriteError is the default ErrorHandler: the status and the reason as a
// one-line plain-text body (wsconn.Dial takes the body's first line as
// HandshakeError.Reason). An ErrorHandler that only adds to it calls it.
func WriteError(w http.ResponseWriter, _ *http.Request, err error) {
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
