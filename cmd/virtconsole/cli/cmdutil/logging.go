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
	if o.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
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
