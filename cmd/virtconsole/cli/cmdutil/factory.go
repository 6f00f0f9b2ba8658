// Package cmdutil holds what every command shares: the Factory of lazy
// dependencies, I/O streams, the command layer's errors and the one table
// that maps errors to exit codes (exit.go), and flag helpers (flags.go).
package cmdutil

import (
	"context"
	"log/slog"
	"os"
	"sync"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
)

// Factory builds the dependencies commands need, lazily, so that a
// command pays only for what it uses and tests can replace any of them.
type Factory struct {
	IOStreams *IOStreams
	// Getenv reads the environment (os.Getenv by default).
	Getenv func(string) string
	// Logger returns the structured logger writing to ErrOut, as Log
	// says when it is first called.
	Logger func() *slog.Logger
	// Log is the daemons' --log-format and --log-level: their flags set
	// it before anything logs.
	Log LogOptions
	// Executable is the path of the running binary (for help text).
	Executable string
	// Libvirt connects to a libvirt URI ("" means LIBVIRT_DEFAULT_URI or
	// qemu:///system, as virsh does).
	Libvirt func(ctx context.Context, uri string) (*libvirtadmin.Conn, error)
}

// NewFactory returns the Factory for a process with the given streams.
func NewFactory(io *IOStreams) *Factory {
	f := &Factory{IOStreams: io, Getenv: os.Getenv, Executable: "virtconsole"}
	f.Log.LevelVar = new(slog.LevelVar)
	f.Logger = sync.OnceValue(func() *slog.Logger {
		return f.Log.NewLogger(io.ErrOut)
	})
	f.Libvirt = func(ctx context.Context, uri string) (*libvirtadmin.Conn, error) {
		return libvirtadmin.Connect(ctx, f.LibvirtURI(uri))
	}
	return f
}

// LibvirtURI returns uri, or the default libvirt URI when it is empty.
func (f *Factory) LibvirtURI(uri string) string {
	if uri != "" {
		return uri
	}
	if env := f.Getenv("LIBVIRT_DEFAULT_URI"); env != "" {
		return env
	}
	return libvirtresolver.DefaultURI
}
