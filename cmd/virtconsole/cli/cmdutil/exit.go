package cmdutil

import (
	"context"
	"errors"
	"strings"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
)

// Exit codes, documented in every command's help and in the man pages.
const (
	ExitOK          = 0 // success; for interactive sessions, the user left
	ExitUsage       = 1 // bad flags, arguments or input files
	ExitRefused     = 2 // the token or credentials were refused (missing, unknown, not allowed)
	ExitUnreachable = 3 // the console, QEMU or the proxy could not be reached, or its handshake failed
	ExitTLS         = 4 // TLS credentials are invalid or a peer's certificate was not trusted
	ExitLost        = 5 // an established session failed before it was closed normally
	ExitFailure     = 6 // any other failure
	ExitNotFound    = 7 // the domain or console device does not exist, or its consoles are not enabled
	ExitInterrupted = 130
)

// ExitCodesHelp is the table appended to the help of commands that
// connect somewhere.
const ExitCodesHelp = `Exit codes:
  0    success (for interactive sessions: you left, or the console closed)
  1    usage error: bad flags, arguments or input files
  2    refused: token missing, unknown or not allowed
  3    unreachable: the proxy, the resolver or QEMU could not be reached, or the console handshake failed
  4    TLS: invalid credentials, or a peer's certificate is not trusted
  5    connection lost during an established session
  6    any other failure
  7    not found: no such domain or console device, or consoles not enabled
  130  interrupted (SIGINT/SIGTERM)`

// LibvirtError maps an error of the libvirt layer to an exit code.
func LibvirtError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, libvirtresolver.ErrUnreachable):
		return WithCode(ExitUnreachable, err)
	case errors.Is(err, libvirtresolver.ErrDomainNotFound), errors.Is(err, libvirtresolver.ErrNoConsoles),
		errors.Is(err, libvirtresolver.ErrNotEnabled), errors.Is(err, libvirtresolver.ErrNoConsoleDevice):
		return WithCode(ExitNotFound, err)
	case errors.Is(err, libvirtresolver.ErrConsoleBusy):
		return WithCode(ExitRefused, err)
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return WithCode(ExitFailure, err)
}

// ExitError carries an exit code with an error.
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

// SilentError exits with Code without printing anything: the command has
// already reported (e.g. certs check printing each failed check).
type SilentError struct{ Code int }

func (e *SilentError) Error() string { return "exit status" }

// ExitCode maps err to a process exit code.
func ExitCode(err error) int {
	var ee *ExitError
	var se *SilentError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &se):
		return se.Code
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case isFlagError(err):
		return ExitUsage
	}
	return ExitFailure
}

// FlagError is a usage error found while checking flags and arguments.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

func isFlagError(err error) bool {
	var fe *FlagError
	if errors.As(err, &fe) {
		return true
	}
	// cobra's own argument and flag errors are plain errors.
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "unknown command", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "requires at most", "required flag", "if any flags in the group"} {
		if strings.HasPrefix(msg, p) || strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// OneLine folds an error's text onto one line.
func OneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
