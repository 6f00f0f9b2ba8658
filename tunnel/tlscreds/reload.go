package tlscreds

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Reloader holds something built from credential files (a listener's
// tls.Config, a dialer's Creds) that is replaced while in use: after a
// renewal (certbot, cert-manager, "virtconsole certs create") or a SIGHUP,
// later handshakes use the new files, and connections already made keep
// what they were made with. A load that fails keeps the last good value,
// so a half-written or broken renewal changes nothing.
//
// Current is a lock-free read, cheap enough for every handshake.
type Reloader[T any] struct {
	load  func() (T, error)
	paths []string

	cur atomic.Pointer[T]

	mu    sync.Mutex // serialises Reload and Poll
	stamp string     // of paths at the last load attempt
}

// NewReloader loads once with load and returns the Reloader, or load's
// error. paths are the files and directories load reads (a directory
// stands for the regular files in it): Poll reloads when one of them
// changes.
func NewReloader[T any](load func() (T, error), paths ...string) (*Reloader[T], error) {
	r := &Reloader[T]{load: load, paths: paths}
	r.stamp = stampOf(paths)
	v, err := load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(&v)
	return r, nil
}

// Current is the last value loaded successfully.
func (r *Reloader[T]) Current() T { return *r.cur.Load() }

// Reload loads again whether or not the files changed. On failure the
// current value stays and the error says why.
func (r *Reloader[T]) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stamp = stampOf(r.paths)
	return r.reloadLocked()
}

func (r *Reloader[T]) reloadLocked() error {
	v, err := r.load()
	if err != nil {
		return err
	}
	r.cur.Store(&v)
	return nil
}

// Poll reloads if the files changed since the last attempt: it reports
// whether it tried, and the failure. A broken file is tried once, not at
// every poll; a fix to it is tried again.
func (r *Reloader[T]) Poll() (tried bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := stampOf(r.paths)
	if st == r.stamp {
		return false, nil
	}
	r.stamp = st
	return true, r.reloadLocked()
}

// Watch polls every interval until ctx ends, calling report after each
// attempt to reload (err nil: reloaded).
func (r *Reloader[T]) Watch(ctx context.Context, interval time.Duration, report func(error)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if tried, err := r.Poll(); tried {
			report(err)
		}
	}
}

// stampOf describes paths' files by name, size, modification time, inode
// and change time (after symlinks: certbot's live/ directory holds links
// to the current archive files). The change time is there for chmod and
// chown: a key that failed to load because its reader could not read it
// is tried again once its mode or group is fixed. A missing path is part
// of the description.
func stampOf(paths []string) string {
	var b strings.Builder
	stat := func(p string) {
		fi, err := os.Stat(p)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing\n", p)
			return
		}
		var ino uint64
		var ctime int64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino, ctime = st.Ino, st.Ctim.Nano()
		}
		fmt.Fprintf(&b, "%s:%d:%d:%d:%d\n", p, fi.Size(), fi.ModTime().UnixNano(), ino, ctime)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			ents, _ := os.ReadDir(p)
			names := make([]string, 0, len(ents))
			for _, e := range ents {
				names = append(names, e.Name())
			}
			slices.Sort(names)
			for _, n := range names {
				if fi, err := os.Stat(filepath.Join(p, n)); err == nil && fi.Mode().IsRegular() {
					stat(filepath.Join(p, n))
				}
			}
			continue
		}
		stat(p)
	}
	return b.String()
}
