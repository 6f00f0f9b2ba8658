package cmdutil

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// LogOptions are the daemons' --log-format and --log-level. The zero
// value logs text at info, as commands that have neither flag do.
type LogOptions struct {
	Format string // "text" or "json"
	Level  string // "debug", "info", "warn" or "error"
	// LevelVar, if set, is the level of the loggers NewLogger returns, so
	// that a reload can change it in a running daemon (SetLevel).
	LevelVar *slog.LevelVar
}

// LogFormats and LogLevels are the values --log-format and --log-level
// accept.
var (
	LogFormats = []string{"text", "json"}
	LogLevels  = []string{"debug", "info", "warn", "error"}
)

var logLevels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// AddLogFlags registers --log-format and --log-level on fl, bound to o.
// A value outside the choices is a usage error when it is given.
func AddLogFlags(fl *pflag.FlagSet, o *LogOptions) {
	EnumVar(fl, &o.Format, "log-format", "text", LogFormats, "write logs to standard error as `FORMAT`: text (logfmt) or json (one object a line)")
	EnumVar(fl, &o.Level, "log-level", "info", LogLevels, "log messages at `LEVEL` and above: debug, info, warn or error")
}

// NewLogger returns a logger writing to w in o's format from o's level.
func (o LogOptions) NewLogger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: logLevels[o.Level]} // "" is info, slog's zero level
	if o.LevelVar != nil {
		o.LevelVar.Set(logLevels[o.Level])
		ho.Level = o.LevelVar
	}
	if o.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// SetLevel changes the level of the loggers NewLogger made to level, one
// of LogLevels; it reports whether it could (it needs LevelVar).
func (o *LogOptions) SetLevel(level string) bool {
	l, ok := logLevels[level]
	if !ok || o.LevelVar == nil {
		return false
	}
	o.LevelVar.Set(l)
	o.Level = level
	return true
}

// EnumVar registers a string flag that accepts only one of choices, so
// that a wrong value fails when it is parsed (from the command line, the
// environment or a config file) rather than when it is used.
func EnumVar(fl *pflag.FlagSet, p *string, name, def string, choices []string, usage string) {
	*p = def
	fl.Var(&enumValue{p: p, choices: choices}, name, usage)
}

type enumValue struct {
	p       *string
	choices []string
}

func (e *enumValue) Set(s string) error {
	if !slices.Contains(e.choices, s) {
		return fmt.Errorf("want %s", strings.Join(e.choices, ", "))
	}
	*e.p = s
	return nil
}

func (e *enumValue) String() string { return *e.p }
func (e *enumValue) Type() string   { return "string" }
