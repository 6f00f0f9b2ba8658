package cmdutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/consolestream"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/tunnel/termio"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// Exit codes, documented in the help topic "virtconsole help exit-codes"
// (ExitCodesHelp), its man page and the README.
const (
	ExitOK          = 0  // success; for interactive sessions, the user left
	ExitUsage       = 1  // bad flags, arguments or input files; a listen address in use
	ExitRefused     = 2  // the token or credentials were refused (missing, unknown, not allowed; the sessions API's 401/403)
	ExitUnreachable = 3  // the console, QEMU or the proxy could not be reached, or its handshake failed
	ExitTLS         = 4  // TLS credentials are invalid or a peer's certificate was not trusted
	ExitLost        = 5  // an established session failed before it was closed normally
	ExitFailure     = 6  // any other failure
	ExitNotFound    = 7  // the domain or console device does not exist, or its consoles are not enabled; no such live session
	ExitTimeout     = 8  // what the command waited for did not come within its --timeout (serial --expect, screenshot --wait-change)
	ExitIncomplete  = 9  // a recording was cut short: it has no manifest ("recordings verify")
	ExitInvalid     = 10 // a recording failed verification: its signature, hash or size does not match ("recordings verify")
	ExitInterrupted = 130
)

// ExitCodesLine ends the help of the commands whose exit codes mean
// more than success or failure; the table is the help topic
// "virtconsole help exit-codes".
const ExitCodesLine = `Exit codes: see 'virtconsole help exit-codes'.`

// ExitCodesHelp is the table of exit codes, the text of the help topic
// "virtconsole help exit-codes" (and its man page).
const ExitCodesHelp = `Every virtconsole command exits with one of these codes, so that scripts can
tell why it failed; the message on standard error is one line.

    0    success (for interactive sessions: you left, or the console closed)
    1    usage error: bad flags, arguments or input files, or a listen address already in use
    2    refused: token missing, unknown or not allowed; the sessions API refused the client certificate
    3    unreachable: the proxy, the resolver or QEMU could not be reached, or the console handshake failed
    4    TLS: invalid credentials, or a peer's certificate is not trusted
    5    connection lost during an established session
    6    any other failure
    7    not found: no such domain or console device, or consoles not enabled; no such live session
    8    timed out: what the command waited for did not come within its --timeout
         (serial --expect, screenshot --wait-change/--wait-stable)
    9    recording incomplete: cut short, it has no manifest (recordings verify)
    10   recording invalid: its signature, hash or size does not match its manifest (recordings verify)
    130  interrupted (SIGINT/SIGTERM)`

// The errors of the command layer itself. Packages below it return their
// own typed or sentinel errors; these say what only a command knows: that
// a flag was wrong, that a connection was being opened, that a session had
// been established.

// FlagError is a usage error: bad flags or arguments, or a file a flag
// names that cannot be read.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

// DialError is a failure to open a connection to a console: to the proxy,
// to QEMU, or their handshake. It is ExitUnreachable unless its cause says
// more (refused, not found, TLS). Msg, when set, replaces the cause's text.
type DialError struct {
	Msg string
	Err error
}

func (e *DialError) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return e.Err.Error()
}

func (e *DialError) Unwrap() error { return e.Err }

// LostError is the failure of a session that had been established: the
// console connection broke before either side closed it.
type LostError struct{ Err error }

func (e *LostError) Error() string { return e.Err.Error() }
func (e *LostError) Unwrap() error { return e.Err }

// APIError is an HTTP API's refusal (the proxy's sessions API): its
// status and a one-line message with the server's reason. 401 and 403
// are ExitRefused, 404 ExitNotFound, any other ExitFailure.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return e.Msg }

// TimeoutError is a --timeout that expired before what the command
// waited for happened (a screen change, a pattern): ExitTimeout.
type TimeoutError struct{ Err error }

func (e *TimeoutError) Error() string { return e.Err.Error() }
func (e *TimeoutError) Unwrap() error { return e.Err }

// ErrNoToken means a client had no token to present: none given, or an
// empty one.
var ErrNoToken = errors.New("no token")

// ExitError carries an exit code with an error, for the rare outcome that
// only the command can classify. Prefer a typed error and a row in
// exitTable.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// WithCode wraps err so that it exits with code. A nil err stays nil.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// SilentError is a failure that has already been reported: Main prints
// nothing more. The exit code is Code, or when Code is 0 that of Err
// (e.g. a viewer connection's failure, printed when it happened).
type SilentError struct {
	Code int
	Err  error
}

func (e *SilentError) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "exit status"
}

func (e *SilentError) Unwrap() error { return e.Err }

// Reported marks err as printed already: it keeps its exit code and Main
// does not print it again. A nil err stays nil.
func Reported(err error) error {
	if err == nil {
		return nil
	}
	return &SilentError{Err: err}
}

// ListenError describes a failure to listen on addr. A busy address is a
// usage error whose message says what to do: choose another value of
// flag, or stop the program holding it.
func ListenError(addr, flag string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return &FlagError{Err: fmt.Errorf("listen on %s: address already in use; choose another %s or stop the program using it", addr, flag)}
	}
	return fmt.Errorf("listen on %s: %w", addr, err)
}

// exitTable is the one table from errors to exit codes. The first row
// that finds one of its errors anywhere in err's chain (errors.Is/As)
// gives the code; an error no row knows is ExitFailure. Rows go from the
// outcome that explains most to the one that explains least: a lost
// session may wrap a network error, a failed dial may wrap a refusal, a
// TLS failure or libvirt's unreachable daemon.
var exitTable = []struct {
	code  int
	match func(error) bool
}{
	{ExitInterrupted, is(context.Canceled)},
	{ExitUsage, anyOf(as[*FlagError], as[*pflag.NotExistError], as[*pflag.ValueRequiredError],
		as[*pflag.InvalidValueError], as[*pflag.InvalidSyntaxError], as[*tlscreds.PolicyError])},
	{ExitTimeout, anyOf(as[*TimeoutError], as[*termio.TimeoutError])},
	// A websocket close other than 1000 ends an established session: the
	// proxy says why (console failed, proxy shutting down).
	{ExitLost, anyOf(as[*LostError], as[*wsconn.CloseError])},
	{ExitRefused, anyOf(is(ErrNoToken), as[*protocols.HandshakeError], is(consolestream.ErrConsoleBusy),
		proxyStatus(http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound, http.StatusTooManyRequests),
		apiStatus(http.StatusUnauthorized, http.StatusForbidden))},
	{ExitNotFound, anyOf(is(libvirtapi.ErrDomainNotFound, libvirtadmin.ErrNoConsoles,
		libvirtadmin.ErrNotEnabled, consolestream.ErrNoConsoleDevice), apiStatus(http.StatusNotFound))},
	// libvirt's errors say what failed on its connection, TLS included.
	{ExitUnreachable, anyOf(is(libvirtapi.ErrUnreachable),
		proxyStatus(http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))},
	// Any other answer of the proxy: it was reached and said no.
	{ExitFailure, as[*wsconn.HandshakeError]},
	{ExitTLS, IsTLS},
	{ExitUnreachable, as[*DialError]},
}

// ExitCode maps err to a process exit code: the code of an ExitError or
// SilentError that carries one, else exitTable's.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee.Code
	}
	if se, ok := errors.AsType[*SilentError](err); ok && se.Code != 0 {
		return se.Code
	}
	for _, row := range exitTable {
		if row.match(err) {
			return row.code
		}
	}
	return ExitFailure
}

// IsTLS reports whether err is a failure of TLS credentials or of a TLS
// handshake (the table's ExitTLS): this side's checks (tlscreds), the
// peer's certificate (crypto/x509, as crypto/tls reports it) or an alert
// the peer sent.
func IsTLS(err error) bool {
	if anyOf(as[*tlscreds.CheckError], as[*tlscreds.HandshakeError], as[*tls.CertificateVerificationError],
		as[x509.UnknownAuthorityError], as[x509.CertificateInvalidError], as[x509.HostnameError],
		as[tls.RecordHeaderError], as[tls.AlertError])(err) {
		return true
	}
	// crypto/tls reports an alert from the peer as a *net.OpError with Op
	// "remote error" (its alert type is unexported).
	oe, ok := errors.AsType[*net.OpError](err)
	return ok && oe.Op == "remote error"
}

func is(targets ...error) func(error) bool {
	return func(err error) bool {
		for _, t := range targets {
			if errors.Is(err, t) {
				return true
			}
		}
		return false
	}
}

func as[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}

func anyOf(matches ...func(error) bool) func(error) bool {
	return func(err error) bool {
		for _, m := range matches {
			if m(err) {
				return true
			}
		}
		return false
	}
}

// proxyStatus matches a websocket handshake the proxy answered with one
// of statuses.
func proxyStatus(statuses ...int) func(error) bool {
	return func(err error) bool {
		he, ok := errors.AsType[*wsconn.HandshakeError](err)
		if !ok {
			return false
		}
		for _, s := range statuses {
			if he.StatusCode == s {
				return true
			}
		}
		return false
	}
}

// apiStatus matches an *APIError with one of statuses.
func apiStatus(statuses ...int) func(error) bool {
	return func(err error) bool {
		ae, ok := errors.AsType[*APIError](err)
		return ok && slices.Contains(statuses, ae.Status)
	}
}

// OneLine folds an error's text onto one line.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
