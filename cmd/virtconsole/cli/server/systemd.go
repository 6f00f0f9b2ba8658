package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
)

// systemd integration: a listener handed over by socket activation
// (LISTEN_FDS, virtconsole.socket) and sd_notify messages to the service
// manager (NOTIFY_SOCKET, Type=notify). Without systemd, both are no-ops:
// the environment variables are not set.

// activatedListener returns the listening socket systemd handed this
// process, or nil when there is none (then the daemon listens on
// --listen). Only one is served: a .socket unit with several
// ListenStream= lines is a configuration error, said as such.
func activatedListener() (net.Listener, error) {
	ls, err := activation.Listeners() // also unsets LISTEN_*: a child we start must not take them
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	switch {
	case len(ls) == 0:
		return nil, nil
	case len(ls) > 1 || ls[0] == nil:
		for _, l := range ls {
			if l != nil {
				l.Close()
			}
		}
		// The unit's mistake, like a busy --listen address: a usage error.
		return nil, &cmdutil.FlagError{Err: fmt.Errorf("socket activation handed %d file descriptors; virtconsole serves one stream socket: give its .socket unit one ListenStream=", len(ls))}
	}
	return ls[0], nil
}

// The sd_notify states the daemons send. notifyReloading and
// notifyReady frame a configuration reload (SIGHUP, Type=notify-reload):
// send the first before rereading, the second when the new settings are
// in force.
func notifyReady(log *slog.Logger)    { sdNotify(log, sddaemon.SdNotifyReady) }
func notifyStopping(log *slog.Logger) { sdNotify(log, sddaemon.SdNotifyStopping) }
func notifyReloading(log *slog.Logger) {
	// systemd wants the monotonic time of the reload's start with it.
	sdNotify(log, sddaemon.SdNotifyReloading+"\n"+strings.TrimSpace(sddaemon.SdNotifyMonotonicUsec()))
}

func sdNotify(log *slog.Logger, state string) {
	// Not unsetting NOTIFY_SOCKET: STOPPING=1 and the watchdog use it later.
	if _, err := sddaemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", "state", state, "error", err)
	}
}

// watchdog returns the background work that keeps systemd's watchdog
// (WatchdogSec=, given to us as WATCHDOG_USEC) fed, at half its period as
// sd_watchdog_enabled(3) advises, or nil when it is off. Like the other
// background work it ends when the daemon starts stopping: systemd does
// not watch a stopping service (TimeoutStopSec= bounds the drain).
func watchdog(log *slog.Logger) func(context.Context) {
	period, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: ignoring its settings", "error", err)
		return nil
	}
	if period <= 0 {
		return nil
	}
	return func(ctx context.Context) {
		t := time.NewTicker(period / 2)
		defer t.Stop()
		for {
			sdNotify(log, sddaemon.SdNotifyWatchdog)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}
