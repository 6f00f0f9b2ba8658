package cmdutil

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
)

// Exit codes, documented in the help topic "virtconsole help exit-codes"
// (ExitCodesHelp), its man page and the README.
const (
	ExitOK          = 0 // success; for interactive sessions, the user left
	ExitUsage       = 1 // bad flags, arguments or input files; a listen address in use
	ExitRefused     = 2 // the token or credentials were refused (missing, unknown, not allowed)
	ExitUnreachable = 3 // the console, QEMU or the proxy could not be reached, or its handshake failed
	ExitTLS         = 4 // TLS credentials are invalid or a peer's certificate was not trusted
	ExitLost        = 5 // an established session failed before it was closed normally
	ExitFailure     = 6 // any other failure
	ExitNotFound    = 7 // the domain or console device does not exist, or its consoles are not enabled
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

// ListenError maps a failure to listen on addr to an exit code. A busy
// address is a usage error (ExitUsage) whose message says what to do:
// choose another value of flag, or stop the program holding it.
func ListenError(addr, flag string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return WithCode(ExitUsage, fmt.Errorf("listen on %s: address already in use; choose another %s or stop the program using it", addr, flag))
	}
	return WithCode(ExitFailure, fmt.Errorf("listen on %s: %w", addr, err))
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
