// Package cmdutil holds what every command shares: the Factory of lazy
// dependencies, I/O streams, exit codes and flag helpers.
package cmdutil

import (
	"log/slog"
	"os"
	"sync"
)

// Factory builds the dependencies commands need, lazily, so that a
// command pays only for what it uses and tests can replace any of them.
type Factory struct {
	IOStreams *IOStreams
	// Getenv reads the environment (os.Getenv by default).
	Getenv func(string) string
	// Logger returns the structured logger writing to ErrOut.
	Logger func() *slog.Logger
	// Executable is the path of the running binary (for help text).
	Executable string
}

// NewFactory returns the Factory for a process with the given streams.
func NewFactory(io *IOStreams) *Factory {
	f := &Factory{IOStreams: io, Getenv: os.Getenv, Executable: "virtconsole"}
	f.Logger = sync.OnceValue(func() *slog.Logger {
		return slog.New(slog.NewTextHandler(io.ErrOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	return f
}
