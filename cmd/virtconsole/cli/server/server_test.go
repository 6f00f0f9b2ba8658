package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// testFactory is a Factory whose environment has no VIRTCONSOLE_*
// settings and names an empty config file, so that neither the
// developer's environment nor an installed /etc/virtconsole/server.toml
// changes what the daemons under test do.
func testFactory(errOut io.Writer) *cmdutil.Factory {
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, errOut))
	f.Getenv = func(k string) string {
		switch {
		case k == "VIRTCONSOLE_CONFIG":
			return os.DevNull
		case strings.HasPrefix(k, "VIRTCONSOLE_"):
			return ""
		}
		return os.Getenv(k)
	}
	return f
}

// parseDaemon runs "server args..." (or "server proxy ...") up to the
// daemon's start and returns the options it would run with; the command's
// output goes to out.
func parseDaemon(t *testing.T, out io.Writer, args ...string) *ProxyOptions {
	t.Helper()
	f := testFactory(out)
	var got *ProxyOptions
	capture := func(_ context.Context, o *ProxyOptions) error { got = o; return nil }
	cmd := NewCmdServer(f, capture)
	if len(args) > 0 && args[0] == "proxy" {
		// Swap in a "proxy" subcommand that reports its options.
		for _, c := range cmd.Commands() {
			if c.Name() == "proxy" {
				cmd.RemoveCommand(c)
			}
		}
		cmd.AddCommand(NewCmdProxy(f, capture))
	}
	cmd.SetArgs(args)
	cmd.SetOut(out) // cobra prints notices on Out when set; root decides where that goes
	cmd.SetErr(out)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return got
}

// TestSingleUseFlag: --single-use means the same on both daemons that
// have it, with the default of their token source; "server"'s former
// --reusable-tokens still works, as --single-use=false, and says so.
func TestSingleUseFlag(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		want       bool
		deprecated bool
	}{
		{[]string{}, true, false},
		{[]string{"--single-use=false"}, false, false},
		{[]string{"--reusable-tokens"}, false, true},
		{[]string{"--reusable-tokens=false"}, true, true},
		{[]string{"proxy"}, false, false},
		{[]string{"proxy", "--single-use"}, true, false},
	} {
		var errOut bytes.Buffer
		got := parseDaemon(t, &errOut, tc.args...)
		if got == nil || got.SingleUse != tc.want {
			t.Errorf("%v: SingleUse = %v, want %v", tc.args, got != nil && got.SingleUse, tc.want)
		}
		notice := strings.Contains(errOut.String(), "Flag --reusable-tokens has been deprecated, use --single-use=false")
		if notice != tc.deprecated {
			t.Errorf("%v: output %q", tc.args, errOut.String())
		}
	}
	// Help shows the new name only, with each daemon's default.
	for _, args := range [][]string{{"--help"}, {"proxy", "--help"}} {
		var out bytes.Buffer
		cmd := NewCmdServer(testFactory(io.Discard), nil)
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		help := out.String()
		if strings.Contains(help, "reusable-tokens") || !strings.Contains(help, "--single-use") {
			t.Errorf("%v: help:\n%s", args, help)
		}
		if wantDefault := args[0] == "--help"; strings.Contains(help, "(default true)") != wantDefault {
			t.Errorf("%v: --single-use default shown wrongly:\n%s", args, help)
		}
	}
}

// TestDaemonOwnsItsGoroutines: serve starts its background work only
// once it listens, and returns only when that work and the server have
// ended.
func TestDaemonOwnsItsGoroutines(t *testing.T) {
	log := testFactory(io.Discard).Logger()
	var started, finished atomic.Int32
	work := func(ctx context.Context) {
		started.Add(1)
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a slow watcher
		finished.Add(1)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	d := &daemon{name: "test", addr: busy.Addr().String(), handler: http.NotFoundHandler(), background: []func(context.Context){work}}
	if err := d.serve(context.Background(), log); err == nil {
		t.Fatal("serve on a busy address: no error")
	}
	if started.Load() != 0 {
		t.Fatal("background work started although the daemon could not listen")
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan net.Addr, 1)
	d = &daemon{name: "test", addr: "127.0.0.1:0", handler: http.NotFoundHandler(), ready: func(a net.Addr) { ready <- a },
		background: []func(context.Context){work, work}, drainTimeout: time.Second}
	errc := make(chan error, 1)
	go func() { errc <- d.serve(ctx, log) }()
	<-ready
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if started.Load() != 2 || finished.Load() != 2 {
		t.Fatalf("serve returned with %d of %d background funcs finished", finished.Load(), started.Load())
	}
}

// TestWatchTokens: a static token file's watch is the daemon's
// background work, and follows the file.
func TestWatchTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	write := func(tok string) {
		data, _ := json.Marshal(map[string]resolver.Console{tok: {Type: "serial", Address: "127.0.0.1:4555"}})
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("one")
	defer func(d time.Duration) { tokenWatchInterval = d }(tokenWatchInterval)
	tokenWatchInterval = 20 * time.Millisecond
	f := testFactory(io.Discard)
	res, err := newResolver(f, path, "", "", tlscreds.DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	bg := watchTokens(res, f.Logger())
	if len(bg) != 1 {
		t.Fatalf("%d background funcs for a token file, want 1", len(bg))
	}
	if n := len(watchTokens(resolver.ResolverFunc(nil), f.Logger())); n != 0 {
		t.Fatalf("%d background funcs for another resolver", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); bg[0](ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(10 * time.Millisecond) // a new mtime
	write("second")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := res.Resolve(context.Background(), "second"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the watch did not reload the token file")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWebFlag: --web is on by default for the bundled server, off for the
// proxy alone, and a config file key like every flag.
func TestWebFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{}, true},
		{[]string{"--web=false"}, false},
		{[]string{"--config", writeConfig(t, "[server]\nweb = false\n")}, false},
		{[]string{"proxy"}, false},
		{[]string{"proxy", "--web"}, true},
		{[]string{"proxy", "--config", writeConfig(t, "[proxy]\nweb = true\n")}, true},
	} {
		got := parseDaemon(t, io.Discard, tc.args...)
		if got == nil || got.Web != tc.want {
			t.Errorf("%v: Web = %v, want %v", tc.args, got != nil && got.Web, tc.want)
		}
	}
}
