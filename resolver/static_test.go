package resolver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// Distinctive tokens, so that "the message does not contain the token"
// means something.
const (
	tokA = "tokA-4f1c9e7b2d-SECRET"
	tokB = "tokB-8a3d5c1e6f-SECRET"
	tokC = "tokC-0b7e2a9d4c-SECRET"
	tokD = "tokD-6e2f8b1a7c-SECRET"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile atomically replaces path (new inode), as editors and
// config-management tools do.
func replaceFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mustResolve(t *testing.T, r Resolver, token string) protocols.Target {
	t.Helper()
	tg, err := r.Resolve(context.Background(), token)
	if err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	return tg
}

func wantNotFound(t *testing.T, r Resolver, token string) {
	t.Helper()
	_, err := r.Resolve(context.Background(), token)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Resolve: err = %v, want ErrNotFound", err)
	}
}

func TestLoadFileOK(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, `{
  "`+tokA+`": {"type":"serial","address":"127.0.0.1:4555","insecure":false},
  "`+tokB+`": {"type":"vnc","address":"[::1]:5901","insecure":true,"tlsTunnel":false,"password":"pw",
                "comment":"unknown fields are ignored","extra":{"nested":[1,2,3]}},
  "`+tokC+`": {"type":"spice","address":"host.example:5902","tlsTunnel":true},
  "`+tokD+`": {"type":"serial","address":"127.0.0.1:4556","role":"view","record":"required"}
}`)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 4 || s.Path() != path {
		t.Fatalf("Len = %d, Path = %q", s.Len(), s.Path())
	}
	want := map[string]protocols.Target{
		tokA: {Kind: protocols.KindSerial, Address: "127.0.0.1:4555"},
		tokB: {Kind: protocols.KindVNC, Address: "[::1]:5901", Insecure: true, Password: "pw"},
		tokC: {Kind: protocols.KindSPICE, Address: "host.example:5902", TLSTunnel: true},
		tokD: {Kind: protocols.KindSerial, Address: "127.0.0.1:4556", Role: protocols.RoleView, Record: protocols.RecordRequired},
	}
	for tok, w := range want {
		if got := mustResolve(t, s, tok); !reflect.DeepEqual(got, w) {
			t.Errorf("Resolve(%s) = %+v, want %+v", tok[:4], got, w)
		}
	}
	for _, bad := range []string{"", "tokA", tokA + "x", tokA[:len(tokA)-1] + "X", strings.ToUpper(tokA)} {
		wantNotFound(t, s, bad)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Resolve(ctx, tokA); !errors.Is(err, context.Canceled) {
		t.Errorf("Resolve with cancelled ctx: %v", err)
	}
}

func TestLoadFileEmptyObject(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, "{}\n")
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 0 {
		t.Fatalf("Len = %d", s.Len())
	}
	wantNotFound(t, s, tokA)
}

func TestLoadFileMalformed(t *testing.T) {
	good := `{"type":"vnc","address":"127.0.0.1:5901"}`
	cases := []struct {
		name    string
		content string
		want    []string // substrings of the message
	}{
		{"empty file", "  \n", []string{"file is empty", "JSON object"}},
		{"syntax", `{"` + tokA + `": {"type":"vnc" "address":"127.0.0.1:5901"}}`,
			[]string{"invalid JSON at line 1, column"}},
		{"syntax on line 3", "{\n\"" + tokA + "\": " + good + ",\n\"" + tokB + "\" " + good + "\n}",
			[]string{"invalid JSON at line 3"}},
		{"trailing comma", `{"` + tokA + `": ` + good + `,}`, []string{"invalid JSON", "trailing comma"}},
		{"control char in token", "{\"" + tokA + "\tX\": " + good + "}",
			[]string{"invalid JSON", "invalid character in a string"}},
		{"bad escape in token", `{"` + tokA + `\q": ` + good + `}`, []string{"invalid JSON", "in a string"}},
		{"truncated", `{"` + tokA + `": {"type":"vnc",`, []string{"invalid JSON"}},
		{"top-level array", `[` + good + `]`, []string{"an array", "want a JSON object"}},
		{"value not object", `{"` + tokA + `": "vnc 127.0.0.1:5901"}`,
			[]string{"entry 1 (line 1)", "a string", "want a console object"}},
		{"value null", `{"` + tokA + `": ` + good + `, "` + tokB + `": null}`,
			[]string{"entry 2", "null"}},
		{"bad type", "{\n  \"" + tokA + "\": {\"type\":\"vnx\",\"address\":\"127.0.0.1:5901\"}\n}",
			[]string{"entry 1 (line 2, address \"127.0.0.1:5901\")", `unknown console type "vnx"`, "vnc, spice, serial or console"}},
		{"missing type", `{"` + tokA + `": {"address":"127.0.0.1:5901"}}`,
			[]string{"entry 1", `unknown console type ""`}},
		{"type not string", `{"` + tokA + `": {"type":5,"address":"127.0.0.1:5901"}}`,
			[]string{"entry 1", `field "type" must be a string`}},
		{"insecure not bool", `{"` + tokA + `": {"type":"vnc","address":"127.0.0.1:5901","insecure":"no"}}`,
			[]string{`field "insecure" must be true or false`}},
		{"bad role", `{"` + tokA + `": {"type":"serial","address":"127.0.0.1:4555","role":"admin"}}`,
			[]string{"entry 1", `unknown role "admin"`, "control or view"}},
		{"bad record", `{"` + tokA + `": {"type":"serial","address":"127.0.0.1:4555","record":"always"}}`,
			[]string{"entry 1", `record "always"`, "off, on or required"}},
		{"record holding a token", `{"` + tokA + `": {"type":"serial","address":"127.0.0.1:4555","record":"` + tokB + `"}, "` + tokB + `": ` + good + `}`,
			[]string{"record", "withheld"}},
		{"role holding a token", `{"` + tokA + `": {"type":"serial","address":"127.0.0.1:4555","role":"` + tokB + `"}, "` + tokB + `": ` + good + `}`,
			[]string{"unknown role", "withheld"}},
		{"bad address", `{"` + tokA + `": ` + good + `, "` + tokB + `": {"type":"serial","address":"127.0.0.1"}}`,
			[]string{"entry 2 (line 1, address \"127.0.0.1\"): bad address: want host:port"}},
		{"bad port", `{"` + tokA + `": {"type":"serial","address":"127.0.0.1:99999"}}`,
			[]string{"port must be 1-65535"}},
		{"empty token", "{\"" + tokA + "\": " + good + ",\n\"\": {\"type\":\"vnc\",\"address\":\"10.0.0.1:5900\"}}",
			[]string{"entry 2 (line 2, address \"10.0.0.1:5900\")", "empty token"}},
		{"duplicate token", "{\n\"" + tokA + "\": " + good + ",\n\"" + tokB + "\": " + good + ",\n\"" + tokA +
			"\": {\"type\":\"spice\",\"address\":\"10.0.0.2:5900\"}\n}",
			[]string{"entry 3 (line 4, address \"10.0.0.2:5900\")", "same token as entry 1 (line 2)"}},
		{"token in address withheld", `{"` + tokA + `": {"type":"vnc","address":"` + tokB + `"}, "` + tokB + `": ` + good + `}`,
			[]string{"entry 1 (line 1)", "withheld"}},
		{"token in type withheld", `{"` + tokA + `": {"type":"` + tokA + `","address":"127.0.0.1:1"}}`,
			[]string{"unknown console type", "withheld"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			writeFile(t, path, tc.content)
			s, err := LoadFile(path)
			if err == nil {
				t.Fatalf("LoadFile succeeded (%d tokens), want an error", s.Len())
			}
			msg := err.Error()
			t.Logf("%s", msg)
			checkSafeMessage(t, msg, path, tc.want)
		})
	}

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.json")
		_, err := LoadFile(path)
		if err == nil {
			t.Fatal("LoadFile succeeded")
		}
		checkSafeMessage(t, err.Error(), path, []string{"cannot read it", "no such file"})
	})
	t.Run("directory", func(t *testing.T) {
		path := t.TempDir()
		_, err := LoadFile(path)
		if err == nil {
			t.Fatal("LoadFile succeeded")
		}
		checkSafeMessage(t, err.Error(), path, []string{"not a regular file"})
	})
}

func checkSafeMessage(t *testing.T, msg, path string, want []string) {
	t.Helper()
	if !strings.HasPrefix(msg, "token file "+path+": ") {
		t.Errorf("message does not start by naming the file: %q", msg)
	}
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("message is not one line: %q", msg)
	}
	for _, tok := range []string{tokA, tokB, tokC, "SECRET"} {
		if strings.Contains(msg, tok) {
			t.Errorf("message contains a token: %q", msg)
		}
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("message %q does not contain %q", msg, w)
		}
	}
}

func TestNewStatic(t *testing.T) {
	s, err := NewStatic(map[string]Console{
		tokA: {Type: "vnc", Address: "127.0.0.1:5901", Password: "x"},
		tokB: {Type: "console", Address: "127.0.0.1:4556", Insecure: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mustResolve(t, s, tokA); !reflect.DeepEqual(got, protocols.Target{Kind: protocols.KindVNC, Address: "127.0.0.1:5901", Password: "x"}) {
		t.Errorf("got %+v", got)
	}
	wantNotFound(t, s, tokC)
	if err := s.Reload(); err == nil {
		t.Error("Reload without a file succeeded")
	}
	// Watch without a file returns at once.
	s.Watch(context.Background(), time.Millisecond, nil)

	for name, tc := range map[string]struct {
		m    map[string]Console
		want string
	}{
		"bad type":    {map[string]Console{tokA: {Type: "rdp", Address: "10.0.0.1:1"}}, `the console at address "10.0.0.1:1": unknown console type "rdp"`},
		"bad address": {map[string]Console{tokA: {Type: "vnc", Address: "10.0.0.1"}}, "want host:port"},
		"empty token": {map[string]Console{"": {Type: "vnc", Address: "10.0.0.3:1"}}, `"10.0.0.3:1" has an empty token`},
	} {
		_, err := NewStatic(tc.m)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), tokA) {
			t.Errorf("%s: err = %v, want it to contain %q and no token", name, err, tc.want)
		}
	}
}

func TestStaticReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, `{"`+tokA+`": {"type":"vnc","address":"127.0.0.1:5901"}}`)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mustResolve(t, s, tokA)

	writeFile(t, path, `{"`+tokB+`": {"type":"serial","address":"127.0.0.1:4555"}}`)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := mustResolve(t, s, tokB); got.Kind != protocols.KindSerial {
		t.Errorf("got %+v", got)
	}
	wantNotFound(t, s, tokA)
}

func TestStaticReloadMalformedKeepsTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, `{"`+tokA+`": {"type":"vnc","address":"127.0.0.1:5901"}}`)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`{"` + tokB + `": {"type":"vnc","address":"127.0.0.1:5901"`,
		`{"` + tokB + `": {"type":"bogus","address":"127.0.0.1:5901"}}`,
		``,
	} {
		writeFile(t, path, bad)
		err := s.Reload()
		if err == nil {
			t.Fatalf("Reload of %q succeeded", bad)
		}
		checkSafeMessage(t, err.Error(), path, nil)
		mustResolve(t, s, tokA)
		wantNotFound(t, s, tokB)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload of a missing file succeeded")
	}
	mustResolve(t, s, tokA)
}

// logBuffer is an io.Writer for a slog handler that tests can read while
// Watch writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStaticWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, `{"`+tokA+`": {"type":"vnc","address":"127.0.0.1:5901"}}`)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Watch(ctx, 5*time.Millisecond, logger)
	}()
	defer func() {
		cancel()
		<-done
	}()

	found := func(tok string) func() bool {
		return func() bool {
			_, err := s.Resolve(context.Background(), tok)
			return err == nil
		}
	}

	// In-place rewrite (size changes).
	writeFile(t, path, `{"`+tokA+`": {"type":"vnc","address":"127.0.0.1:5901"}, "`+tokB+`": {"type":"serial","address":"127.0.0.1:4555"}}`)
	eventually(t, "the second token", found(tokB))
	eventually(t, "the reload log line", func() bool { return strings.Contains(logs.String(), "tokens=2") })

	// Malformed: logged, last good table kept.
	replaceFile(t, path, `{"`+tokC+`": {"type":"vnc",`)
	eventually(t, "the failed-reload log line", func() bool { return strings.Contains(logs.String(), "not reloaded") })
	mustResolve(t, s, tokA)
	mustResolve(t, s, tokB)
	wantNotFound(t, s, tokC)

	// Atomic replacement by rename, same size as the original file: only
	// the inode (and perhaps mtime) tells.
	replaceFile(t, path, `{"`+tokC+`": {"type":"vnc","address":"127.0.0.1:5901"}}`)
	eventually(t, "the renamed file", found(tokC))
	wantNotFound(t, s, tokA)

	// Removed: logged, table kept; restored: picked up again.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unreadable log line", func() bool { return strings.Contains(logs.String(), "unreadable") })
	mustResolve(t, s, tokC)
	replaceFile(t, path, `{"`+tokA+`": {"type":"console","address":"127.0.0.1:4556"}}`)
	eventually(t, "the restored file", found(tokA))

	out := logs.String()
	t.Logf("logs:\n%s", out)
	for _, tok := range []string{tokA, tokB, tokC, "SECRET"} {
		if strings.Contains(out, tok) {
			t.Errorf("logs contain a token")
		}
	}
}

// A file that stays malformed is logged once, not at every poll; a file
// that stays missing likewise.
func TestStaticPollLogsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	writeFile(t, path, `{"`+tokA+`": {"type":"vnc","address":"127.0.0.1:5901"}}`)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	for i := 0; i < 3; i++ {
		s.poll(logger) // unchanged: silent
	}
	if out := logs.String(); out != "" {
		t.Fatalf("unchanged file logged: %s", out)
	}
	replaceFile(t, path, `{"`+tokB+`": {"type":"vnc","address":"127.0.0.1:5901"`)
	for i := 0; i < 3; i++ {
		s.poll(logger)
	}
	if n := strings.Count(logs.String(), "not reloaded"); n != 1 {
		t.Errorf("malformed file logged %d times, want once:\n%s", n, logs.String())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		s.poll(logger)
	}
	if n := strings.Count(logs.String(), "unreadable"); n != 1 {
		t.Errorf("missing file logged %d times, want once:\n%s", n, logs.String())
	}
	replaceFile(t, path, `{"`+tokB+`": {"type":"vnc","address":"127.0.0.1:5901"}}`)
	s.poll(logger)
	mustResolve(t, s, tokB)
	if !strings.Contains(logs.String(), "tokens=1") {
		t.Errorf("successful reload not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "SECRET") {
		t.Errorf("logs contain a token:\n%s", logs.String())
	}
}

func TestStaticConcurrentResolveDuringReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	fileA := `{"` + tokA + `": {"type":"vnc","address":"127.0.0.1:5901"}, "` + tokC + `": {"type":"serial","address":"127.0.0.1:4555"}}`
	fileB := `{"` + tokB + `": {"type":"spice","address":"127.0.0.1:5902"}, "` + tokC + `": {"type":"serial","address":"127.0.0.1:4555"}}`
	writeFile(t, path, fileA)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, time.Millisecond, nil)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// tokC is in every table.
				if _, err := s.Resolve(context.Background(), tokC); err != nil {
					errs <- fmt.Errorf("stable token: %v", err)
					return
				}
				for _, tok := range []string{tokA, tokB} {
					tg, err := s.Resolve(context.Background(), tok)
					if err != nil && !errors.Is(err, ErrNotFound) {
						errs <- err
						return
					}
					if err == nil && tg.Address == "" {
						errs <- errors.New("empty target")
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		content := fileA
		if i%2 == 1 {
			content = fileB
		}
		if i%10 == 9 {
			content = "{broken" // a malformed reload must not disturb readers
		}
		writeFile(t, path, content)
		_ = s.Reload()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWriteFileAtomicNotRegular: a path that is no regular file (a FIFO
// here, as /dev/null or /dev/stdout would be) is written in place, not
// replaced by the rename: "virtconsole vv -o /dev/null" once replaced
// /dev/null with a regular file.
func TestWriteFileAtomicNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		f, err := os.Open(fifo)
		if err != nil {
			got <- nil
			return
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		got <- b
	}()
	if err := WriteFileAtomicMode(fifo, []byte("through the pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != "through the pipe" {
		t.Fatalf("the FIFO's reader got %q", b)
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("%s is no longer a FIFO: %v %v", fifo, fi.Mode(), err)
	}
	if err := WriteFileAtomicMode(t.TempDir(), []byte("x"), 0o644); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("writing over a directory: %v", err)
	}
	// A regular file is replaced, with the mode asked for.
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFileAtomicMode(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("%s: %v %v", p, fi, err)
	}
}
