package server

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/record"
)

// TestRecordFlags: --record-dir alone records serial and console; --record
// picks kinds, "none" none, and refuses kinds not recordable yet; the
// other flags need --record-dir; the directory is created 0700; a key
// others may read is refused.
func TestRecordFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	r, err := (&Record{Dir: dir}).recorder(slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	kinds := r.(*record.Recorder).Kinds
	if !kinds[protocols.KindSerial] || !kinds[protocols.KindConsole] || !kinds[protocols.KindVNC] || !kinds[protocols.KindSPICE] {
		t.Fatalf("default kinds %v", kinds)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("--record-dir not created 0700: %v %v", fi, err)
	}
	for _, tc := range []struct {
		rec  Record
		want string // "" no error
	}{
		{Record{Dir: dir, Kinds: []string{"console"}}, ""},
		{Record{Dir: dir, Kinds: []string{"none"}}, ""},
		{Record{Dir: dir, Kinds: []string{"vnc"}}, ""},
		{Record{Dir: dir, Kinds: []string{"vnc", "spice"}}, ""},
		{Record{Dir: dir, Kinds: []string{"telnet"}}, "want serial, console, vnc, spice or none"},
		{Record{Kinds: []string{"serial"}}, "go with --record-dir"},
		{Record{Input: true}, "go with --record-dir"},
		{Record{Dir: dir, Key: filepath.Join(dir, "missing.pem")}, "recording key"},
	} {
		_, err := tc.rec.recorder(slog.Default())
		var fe *cmdutil.FlagError
		if tc.want == "" && err != nil || tc.want != "" && (!errors.As(err, &fe) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want a usage error with %q", tc.rec, err, tc.want)
		}
	}
	key := filepath.Join(t.TempDir(), "k.pem")
	if _, err := record.GenerateKey(key); err != nil {
		t.Fatal(err)
	}
	if r, err := (&Record{Dir: dir, Key: key}).recorder(slog.Default()); err != nil || r.(*record.Recorder).Key == nil {
		t.Fatalf("with a key: %v", err)
	}
	os.Chmod(key, 0o640)
	if _, err := (&Record{Dir: dir, Key: key}).recorder(slog.Default()); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key others may read: %v", err)
	}
}
