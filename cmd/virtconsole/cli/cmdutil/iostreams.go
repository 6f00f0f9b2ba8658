package cmdutil

import (
	"io"
	"os"

	"golang.org/x/term"
)

// IOStreams are a command's standard streams, injected so that commands
// run in tests without a terminal.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	// StdinFd is the descriptor behind In when In is a terminal, else -1.
	StdinFd int
}

// System returns the process's own streams.
func System() *IOStreams {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		fd = -1
	}
	return &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, StdinFd: fd}
}

// Test returns streams backed by the given reader and writers, with no
// terminal.
func Test(in io.Reader, out, errOut io.Writer) *IOStreams {
	return &IOStreams{In: in, Out: out, ErrOut: errOut, StdinFd: -1}
}

// IsStdinTTY reports whether standard input is a terminal.
func (s *IOStreams) IsStdinTTY() bool { return s.StdinFd >= 0 }

// MakeRaw puts the input terminal into raw mode and returns the function
// that restores it. It is a no-op when stdin is not a terminal.
func (s *IOStreams) MakeRaw() (restore func(), err error) {
	if !s.IsStdinTTY() {
		return func() {}, nil
	}
	old, err := term.MakeRaw(s.StdinFd)
	if err != nil {
		return nil, err
	}
	return func() { term.Restore(s.StdinFd, old) }, nil
}
