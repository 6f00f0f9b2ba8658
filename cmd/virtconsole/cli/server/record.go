package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
	"github.com/virtconsole/virtconsole/tunnel/record"
)

// Record are the session recording flags of "server" and "server proxy".
type Record struct {
	Dir   string
	Kinds []string
	Input bool
	Key   string
}

func addRecordFlags(fl *pflag.FlagSet, r *Record) {
	fl.StringVar(&r.Dir, "record-dir", "", "record sessions in `DIR` (created 0700 if missing): serial and console sessions as asciicast v2 files, VNC sessions as RFB recordings, SPICE sessions as metadata only, each with a signed manifest; see 'virtconsole recordings'")
	fl.StringSliceVar(&r.Kinds, "record", nil, "console `KINDS` recorded by default, comma-separated: serial, console, vnc, spice, or none (default with --record-dir: all of them); a token file's \"record\": \"off\"|\"on\"|\"required\" overrides it per console")
	fl.BoolVar(&r.Input, "record-input", false, "also record what viewers type (and, for VNC, the pointer and the clipboard; off by default: it may be a password)")
	fl.StringVar(&r.Key, "record-key", "", "sign recordings' manifests with the Ed25519 key in `FILE` (PEM PKCS#8, mode 0600; 'virtconsole recordings keygen' makes one)")
}

// recorder returns the proxy's Recorder as the flags say. Without
// --record-dir it records nothing, but still answers for consoles whose
// own policy asks for recording (on: not recorded, with a warning;
// required: refused).
func (r *Record) recorder(log *slog.Logger) (proxy.Recorder, error) {
	if r.Dir == "" {
		if len(r.Kinds) > 0 || r.Input || r.Key != "" {
			return nil, &cmdutil.FlagError{Err: errors.New("--record, --record-input and --record-key go with --record-dir DIR")}
		}
		return &record.Recorder{Logger: log}, nil
	}
	kinds, err := recordKinds(r.Kinds)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("--record-dir: %w", err)}
	}
	rec := &record.Recorder{Dir: r.Dir, Kinds: kinds, Input: r.Input, Logger: log}
	if r.Key != "" {
		if rec.Key, err = record.LoadPrivateKey(r.Key); err != nil {
			return nil, &cmdutil.FlagError{Err: err}
		}
	} else {
		log.Warn("recordings are not signed: give --record-key FILE ('virtconsole recordings keygen -o FILE' makes one)")
	}
	return rec, nil
}

// recordKinds parses --record: none given means every kind recordable.
func recordKinds(names []string) (map[protocols.Kind]bool, error) {
	kinds := map[protocols.Kind]bool{}
	if len(names) == 0 {
		for _, k := range record.Recordable {
			kinds[k] = true
		}
		return kinds, nil
	}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "none" {
			continue
		}
		k, err := protocols.ParseKind(n)
		if err != nil {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("--record %q: want serial, console, vnc, spice or none", n)}
		}
		if !slices.Contains(record.Recordable, k) {
			return nil, &cmdutil.FlagError{Err: fmt.Errorf("--record %s: recording %s sessions is not supported yet; --record takes serial, console, vnc, spice or none", k, k)}
		}
		kinds[k] = true
	}
	return kinds, nil
}
