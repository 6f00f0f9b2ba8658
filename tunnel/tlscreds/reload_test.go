package tlscreds

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// serverReloader creates a cert dir and a Reloader of its server
// credentials.
func serverReloader(t *testing.T) (string, *Reloader[*Creds]) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if err := Create(dir, []string{"127.0.0.1"}, CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := NewReloader(func() (*Creds, error) { return Load(dir, RoleServer) }, dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, r
}

// TestReloader: a renewal is picked up by Poll, a broken file keeps the
// last good credentials (and is tried once), and its fix is picked up.
func TestReloader(t *testing.T) {
	dir, r := serverReloader(t)
	first := r.Current().Cert.Leaf.SerialNumber
	if tried, err := r.Poll(); tried || err != nil {
		t.Fatalf("Poll with nothing changed: tried %v, %v", tried, err)
	}

	// A renewal: new files in place.
	if err := Create(dir, []string{"127.0.0.1"}, CreateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if tried, err := r.Poll(); !tried || err != nil {
		t.Fatalf("Poll after a renewal: tried %v, %v", tried, err)
	}
	renewed := r.Current().Cert.Leaf.SerialNumber
	if renewed.Cmp(first) == 0 {
		t.Fatal("the renewed certificate was not loaded")
	}

	// A broken key: the renewed credentials stay, and the error is
	// reported once.
	key := filepath.Join(dir, RoleServer.KeyFile())
	good, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tried, err := r.Poll(); !tried || err == nil {
		t.Fatalf("Poll with a broken key: tried %v, %v; want an error", tried, err)
	}
	if r.Current().Cert.Leaf.SerialNumber.Cmp(renewed) != 0 {
		t.Fatal("a broken key replaced the credentials")
	}
	if tried, _ := r.Poll(); tried {
		t.Fatal("the same broken files were tried again")
	}
	if err := r.Reload(); err == nil {
		t.Fatal("Reload with a broken key succeeded")
	}

	// Fixed: loaded again.
	if err := os.WriteFile(key, good, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(key, time.Now().Add(time.Second), time.Now().Add(time.Second))
	if tried, err := r.Poll(); !tried || err != nil {
		t.Fatalf("Poll after the fix: tried %v, %v", tried, err)
	}
}

// Watch reports each attempt and stops with its context.
func TestReloaderWatch(t *testing.T) {
	dir, r := serverReloader(t)
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan error, 10)
	done := make(chan struct{})
	go func() { defer close(done); r.Watch(ctx, 10*time.Millisecond, func(err error) { reports <- err }) }()
	if err := Create(dir, []string{"127.0.0.1"}, CreateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reports:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not reload a renewal")
	}
	cancel()
	<-done
}

// A first load that fails is NewReloader's error.
func TestReloaderFirstLoadFails(t *testing.T) {
	if _, err := NewReloader(func() (*Creds, error) { return Load(t.TempDir(), RoleServer) }); err == nil {
		t.Fatal("NewReloader of an empty directory succeeded")
	}
}

// TestReloaderModeFix: a key refused for its mode is tried again once
// chmod fixes it, though its content and modification time are the same.
func TestReloaderModeFix(t *testing.T) {
	dir, r := serverReloader(t)
	key := filepath.Join(dir, RoleServer.KeyFile())
	for _, c := range []struct {
		mode os.FileMode
		ok   bool
	}{{0o644, false}, {0o600, true}} {
		if err := os.Chmod(key, c.mode); err != nil {
			t.Fatal(err)
		}
		if tried, err := r.Poll(); !tried || (err == nil) != c.ok {
			t.Fatalf("Poll after chmod %04o: tried %v, %v", c.mode, tried, err)
		}
	}
}
