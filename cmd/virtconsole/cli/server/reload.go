package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// A reload (SIGHUP, "systemctl reload") re-reads what a daemon can change
// without dropping its sessions: the config file (the log level applies;
// any other changed key is named in a warning, since listeners and bounds
// are fixed at start), the token file, the listener's and the QEMU-side
// TLS credentials, and the audit log (reopened, for logrotate). Sessions
// go on; new ones use what was reloaded. Each part that fails keeps what
// it had and the failure is one line; a config file that no longer parses
// stops the reload before anything changes.
//
// Certificates are also polled (certWatchInterval): a renewal by certbot,
// cert-manager or "virtconsole certs create --force" needs no signal.

// reloadPart is one thing a reload re-reads. reload keeps the previous
// state when it fails, and says why.
type reloadPart struct {
	name   string
	reload func() error
}

// poller is a tlscreds.Reloader of any type, for certificate polling.
type poller interface {
	Poll() (tried bool, err error)
}

// certWatchInterval is how often certificate files are checked for a
// renewal (tests shorten it).
var certWatchInterval = 10 * time.Second

// reloadOnSignal runs d's reload on each signal from hup until ctx ends,
// telling systemd (RELOADING=1, then READY=1).
func (d *daemon) reloadOnSignal(ctx context.Context, log *slog.Logger, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		notifyReloading(log)
		err := d.reload(log)
		if d.reloaded != nil {
			d.reloaded(err)
		}
		notifyReady(log)
	}
}

// reload runs every part, the config file first: if it fails nothing else
// is reloaded. It logs one line for the outcome and returns the first
// failure.
func (d *daemon) reload(log *slog.Logger) error {
	var done []string
	var errs []error
	for i, p := range d.reloads {
		if err := p.reload(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
			if i == 0 && p.name == configPart {
				break
			}
			continue
		}
		done = append(done, p.name)
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		log.Error("reload failed; what failed keeps its previous settings", "reloaded", strings.Join(done, ", "),
			"err", strings.ReplaceAll(err.Error(), "\n", "; "))
		return err
	}
	log.Info("reloaded", "parts", strings.Join(done, ", "))
	return nil
}

// watchCerts returns the background work that polls the named
// credentials for renewals.
func (d *daemon) watchCerts(log *slog.Logger, named map[string]poller) func(context.Context) {
	names := make([]string, 0, len(named))
	for n := range named {
		names = append(names, n)
	}
	slices.Sort(names)
	return func(ctx context.Context) {
		tick := time.NewTicker(certWatchInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, n := range names {
				tried, err := named[n].Poll()
				if !tried {
					continue
				}
				if err != nil {
					log.Error("certificate files changed but do not load; keeping the previous ones", "credentials", n, "err", err)
				} else {
					log.Info("certificates reloaded", "credentials", n)
				}
				if d.reloaded != nil {
					d.reloaded(err)
				}
			}
		}
	}
}

// addCredentials makes d reload r on SIGHUP and when its files change.
func addCredentials[T any](d *daemon, name string, r *tlscreds.Reloader[T]) {
	d.reloads = append(d.reloads, reloadPart{name: name, reload: r.Reload})
	if d.certs == nil {
		d.certs = map[string]poller{}
	}
	d.certs[name] = r
}

// serveTLS makes d serve TLS with r's current config, reloaded on SIGHUP
// and when its files change; nil r means cleartext.
func (d *daemon) serveTLS(r *tlscreds.Reloader[*tls.Config]) {
	if r == nil {
		return
	}
	addCredentials(d, "listener credentials", r)
	d.tls = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return r.Current(), nil }}
}

// reloadTokens makes a static token file part of a reload (a REST
// resolver and libvirt are asked at each lookup: nothing to reload).
func (d *daemon) reloadTokens(res resolver.Resolver) {
	if st, ok := res.(*resolver.Static); ok && st.Path() != "" {
		d.reloads = append(d.reloads, reloadPart{name: "token file", reload: st.Reload})
	}
}

// reloadConfigFirst puts the config file's part, if any, before the
// others: when it fails, nothing else is reloaded.
func (d *daemon) reloadConfigFirst(p *reloadPart) {
	if p != nil {
		d.reloads = append([]reloadPart{*p}, d.reloads...)
	}
}

// configPart is the name of the config file's reload part, which runs
// first.
const configPart = "config file"

// configReload returns the reload part of the config file the daemon
// started with, or nil without one. It checks the file as at start; the
// keys that changed and take effect from the file (not overridden by a
// flag or the environment) are applied if they can be (log-level) and
// named in a warning otherwise.
func (o *daemonOptions) configReload(cmd *cobra.Command, f *cmdutil.Factory, src sources) *reloadPart {
	if o.Config == "" {
		return nil
	}
	inForce := o.entries
	return &reloadPart{name: configPart, reload: func() error {
		entries, err := readConfig(o.Config, o.table)
		if err != nil {
			return err
		}
		if err := checkEntries(cmd, o.Config, o.table, entries); err != nil {
			return err
		}
		was := map[string]string{}
		for _, e := range inForce {
			was[e.Key] = e.Text()
		}
		now := map[string]string{}
		for _, e := range entries {
			now[e.Key] = e.Text()
		}
		var restart []string
		for _, key := range unionKeys(was, now) {
			if was[key] == now[key] || !strings.HasPrefix(src[key], o.Config+":") && src[key] != "default" {
				continue // unchanged, or a flag or the environment wins
			}
			if key == "log-level" {
				level := now[key]
				if level == "" {
					level = "info"
				}
				if f.Log.SetLevel(level) {
					continue
				}
			}
			restart = append(restart, key)
		}
		inForce = entries
		if len(restart) > 0 {
			f.Logger().Warn("config file changed settings that apply only at start; restart the daemon to apply them",
				"file", o.Config, "keys", strings.Join(restart, ", "))
		}
		return nil
	}}
}

func unionKeys(a, b map[string]string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
