package main

// systemctl without systemd, for TestREADMEOperating: the machine that
// runs the tests has no systemd PID 1, so the README's systemctl
// commands reach this stand-in instead (the test binary itself, through
// a script first on the walkthrough's PATH). It does what the
// walkthrough relies on, as the installed unit files say:
//
//   - daemon-reload: checks that the unit files are in place;
//   - enable --now UNIT... (and start): a .socket unit's ListenStream= is
//     held by systemd-socket-activate, which execs the service's command
//     at the first connection; a .service unit's ExecStart= runs (under
//     that socket when it has one, which the shim then connects to once,
//     as systemd would start the service at once) as the unit's sandbox
//     would run it, as far as setpriv(1) can: nobody (for DynamicUser=)
//     in the unit's SupplementaryGroups= only, no capabilities,
//     no_new_privs, with StateDirectory= and LogsDirectory= made for it
//     and a NOTIFY_SOCKET; it returns when the daemon sends READY=1
//     (Type=notify);
//   - reload UNIT: runs ExecReload= with $MAINPID and waits for
//     RELOADING=1 and READY=1;
//   - stop UNIT: SIGTERM, STOPPING=1, and waits until the process is gone.
//
// Not emulated: the watchdog, the mount namespace and the system call
// filter (TestUnitFiles and TestUnitSyscalls check those settings),
// enabling at boot. The daemon's standard error goes to RUN/UNIT.log, not
// the journal. Paths and ports in the unit files get the test's
// substitutions, as the README's lines do; a ListenStream= port listens
// on 127.0.0.1.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// systemctlShimEnv names the shim's config file; when it is set, the test
// binary is systemctl (see TestMain).
const systemctlShimEnv = "VIRTCONSOLE_TEST_SYSTEMCTL"

// shimConfig is what the test tells the shim.
type shimConfig struct {
	Units  string            // stands for /etc/systemd/system
	Run    string            // pid files, logs and notify sockets
	Subs   map[string]string // the walkthrough's substitutions, applied to the units' values
	Groups map[string]string // a unit's group name to the test's group of that role
}

// writeSystemctlShim writes the shim's config and the systemctl script
// that runs it, and returns the script's directory.
func writeSystemctlShim(t *testing.T, c shimConfig) string {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(c.Run, "systemctl-shim.json")
	if err := os.WriteFile(cfg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\n# systemctl for TestREADMEOperating: see systemctl_shim_test.go\n%s=%q exec %q \"$@\"\n", systemctlShimEnv, cfg, self)
	if err := os.WriteFile(filepath.Join(bin, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// shim is one systemctl command's state.
type shim struct {
	shimConfig
	sub *strings.Replacer
}

// systemctlMain runs systemctl args with the config file cfg and returns
// the exit code.
func systemctlMain(cfg string, args []string) int {
	err := func() error {
		b, err := os.ReadFile(cfg)
		if err != nil {
			return err
		}
		s := &shim{}
		if err := json.Unmarshal(b, &s.shimConfig); err != nil {
			return err
		}
		s.sub = replacer(s.Subs)
		switch {
		case len(args) == 1 && args[0] == "daemon-reload":
			return s.daemonReload()
		case len(args) >= 3 && args[0] == "enable" && args[1] == "--now", len(args) >= 2 && args[0] == "start":
			units := args[1:]
			if args[0] == "enable" {
				units = args[2:]
			}
			for _, u := range units {
				if err := s.start(u); err != nil {
					return err
				}
			}
			return nil
		case len(args) == 2 && args[0] == "reload":
			return s.reload(args[1])
		case len(args) == 2 && args[0] == "stop":
			return s.stop(args[1])
		}
		return fmt.Errorf("%q is not among the commands the shim implements (daemon-reload, enable --now, start, reload, stop)", args)
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "systemctl (TestREADMEOperating's shim): %v\n", err)
		return 1
	}
	return 0
}

// directives returns the values of key in unit, substituted.
func (s *shim) directives(unit, key string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(s.Units, unit))
	if err != nil {
		return nil, fmt.Errorf("unit %s not installed: %w", unit, err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			out = append(out, s.sub.Replace(v))
		}
	}
	return out, nil
}

// one returns the single value of key in unit.
func (s *shim) one(unit, key string) (string, error) {
	v, err := s.directives(unit, key)
	if err == nil && len(v) != 1 {
		err = fmt.Errorf("%s: %d %s= lines, want one", unit, len(v), key)
	}
	if err != nil {
		return "", err
	}
	return v[0], nil
}

func (s *shim) daemonReload() error {
	units, _ := filepath.Glob(filepath.Join(s.Units, "virtconsole*.service"))
	if len(units) == 0 {
		return fmt.Errorf("no virtconsole*.service in %s", s.Units)
	}
	for _, u := range units {
		if _, err := s.one(filepath.Base(u), "ExecStart"); err != nil {
			return err
		}
	}
	return nil
}

// path is where the shim keeps what for unit.
func (s *shim) path(unit, what string) string { return filepath.Join(s.Run, unit+"."+what) }

// mainPID returns unit's recorded process, if it still runs.
func (s *shim) mainPID(unit string) (int, bool) {
	b, err := os.ReadFile(s.path(unit, "pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && !gone(pid)
}

// gone reports whether pid has exited (a zombie counts: its parent, an
// earlier shim, does not wait for it).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

// socketOf returns the .socket unit installed for service, if any.
func (s *shim) socketOf(service string) (string, bool) {
	sock := strings.TrimSuffix(service, ".service") + ".socket"
	_, err := os.Stat(filepath.Join(s.Units, sock))
	return sock, err == nil
}

func (s *shim) start(unit string) error {
	switch {
	case strings.HasSuffix(unit, ".socket"):
		service := strings.TrimSuffix(unit, ".socket") + ".service"
		if _, ok := s.mainPID(service); ok {
			return nil
		}
		addr, err := s.one(unit, "ListenStream")
		if err != nil {
			return err
		}
		if !strings.Contains(addr, ":") {
			addr = "127.0.0.1:" + addr
		}
		argv, env, err := s.sandbox(service)
		if err != nil {
			return err
		}
		activate, err := exec.LookPath("systemd-socket-activate")
		if err != nil {
			return err
		}
		// It passes only LISTEN_* and what -E names on to the service.
		args := []string{"--listen", addr}
		for _, e := range env {
			args = append(args, "-E", e)
		}
		cmd, err := s.launch(service, exec.Command(activate, append(args, argv...)...))
		if err != nil {
			return err
		}
		if err := os.WriteFile(s.path(unit, "addr"), []byte(addr), 0o644); err != nil {
			return err
		}
		return s.waitLog(service, cmd.Process.Pid, "Listening on "+addr)
	case strings.HasSuffix(unit, ".service"):
		if _, ok := s.mainPID(unit); ok {
			if sock, ok := s.socketOf(unit); ok {
				return s.trigger(unit, sock) // started by its socket's first connection
			}
			return nil
		}
		if sock, ok := s.socketOf(unit); ok {
			if err := s.start(sock); err != nil {
				return err
			}
			return s.trigger(unit, sock)
		}
		argv, env, err := s.sandbox(unit)
		if err != nil {
			return err
		}
		return s.notified(unit, func() (int, error) {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = env
			cmd, err := s.launch(unit, cmd)
			if err != nil {
				return 0, err
			}
			return cmd.Process.Pid, nil
		}, "READY=1")
	}
	return fmt.Errorf("unit %s: want a .service or .socket", unit)
}

// trigger connects to sock's address once, which makes
// systemd-socket-activate exec the service, and waits for READY=1.
func (s *shim) trigger(service, sock string) error {
	pid, _ := s.mainPID(service)
	addr, err := os.ReadFile(s.path(sock, "addr"))
	if err != nil {
		return err
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && !strings.Contains(string(b), "systemd-socket-activate") {
		return nil // already started
	}
	return s.notified(service, func() (int, error) {
		c, err := net.DialTimeout("tcp", string(addr), 10*time.Second)
		if err != nil {
			return 0, err
		}
		return pid, c.Close()
	}, "READY=1")
}

// sandbox returns the argv and environment that run service's ExecStart=
// as its unit's sandbox would (see the file's comment).
func (s *shim) sandbox(service string) (argv, env []string, err error) {
	start, err := s.one(service, "ExecStart")
	if err != nil {
		return nil, nil, err
	}
	var gids []string
	lines, err := s.directives(service, "SupplementaryGroups")
	if err != nil {
		return nil, nil, err
	}
	for _, line := range lines {
		for _, name := range strings.Fields(line) {
			if n, ok := s.Groups[name]; ok {
				name = n
			}
			g, err := user.LookupGroup(name)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: SupplementaryGroups=: %w", service, err)
			}
			gids = append(gids, g.Gid)
		}
	}
	env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET=" + s.path(service, "notify")}
	for key, base := range map[string]string{"StateDirectory": "/var/lib/", "LogsDirectory": "/var/log/"} {
		names, err := s.directives(service, key)
		if err != nil {
			return nil, nil, err
		}
		var dirs []string
		for _, n := range names {
			dir := s.sub.Replace(base + n)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, nil, err
			}
			if err := os.Chown(dir, 65534, 65534); err != nil {
				return nil, nil, err
			}
			dirs = append(dirs, dir)
		}
		if len(dirs) > 0 {
			env = append(env, strings.ToUpper(strings.TrimSuffix(key, "Directory"))+"_DIRECTORY="+strings.Join(dirs, ":"))
		}
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, nil, err
	}
	return append(setprivArgs(setpriv, gids), strings.Fields(start)...), env, nil
}

// launch starts cmd for unit, its output appended to RUN/UNIT.log, and
// records its pid: the service's main process, since setpriv and
// systemd-socket-activate exec what they run. The shim does not wait for
// it; it stays in the walkthrough's process group, which the test kills.
func (s *shim) launch(unit string, cmd *exec.Cmd) (*exec.Cmd, error) {
	log, err := os.OpenFile(s.path(unit, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, os.WriteFile(s.path(unit, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// waitLog waits until unit's log holds want.
func (s *shim) waitLog(unit string, pid int, want string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(s.path(unit, "log"))
		if strings.Contains(string(b), want) {
			return nil
		}
		if gone(pid) {
			return s.failed(unit, "exited")
		}
	}
	return s.failed(unit, "timed out waiting for "+want)
}

// failed is unit's failure, with its log.
func (s *shim) failed(unit, what string) error {
	b, _ := os.ReadFile(s.path(unit, "log"))
	return fmt.Errorf("%s %s; its log:\n%s", unit, what, b)
}

// notified listens on unit's NOTIFY_SOCKET, runs act (which returns the
// main pid), and waits for each of states in turn, as systemctl waits
// for a Type=notify service.
func (s *shim) notified(unit string, act func() (int, error), states ...string) error {
	path := s.path(unit, "notify")
	os.Remove(path)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := os.Chmod(path, 0o666); err != nil { // the service is not root
		return err
	}
	pid, err := act()
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	deadline := time.Now().Add(45 * time.Second) // TimeoutStopSec=, the longest
	for _, want := range states {
		for {
			if time.Now().After(deadline) {
				return s.failed(unit, "timed out waiting for "+want)
			}
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := conn.Read(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if gone(pid) {
					return s.failed(unit, "exited before "+want)
				}
				continue
			}
			if err != nil {
				return err
			}
			if strings.Contains("\n"+string(buf[:n])+"\n", "\n"+want+"\n") {
				break
			}
		}
	}
	return nil
}

func (s *shim) reload(unit string) error {
	pid, ok := s.mainPID(unit)
	if !ok {
		return fmt.Errorf("%s is not active, cannot reload", unit)
	}
	lines, err := s.directives(unit, "ExecReload")
	if err != nil {
		return err
	}
	if len(lines) == 0 {
		return fmt.Errorf("%s has no ExecReload=: reload is not supported", unit)
	}
	return s.notified(unit, func() (int, error) {
		for _, l := range lines {
			args := strings.Fields(strings.ReplaceAll(l, "$MAINPID", strconv.Itoa(pid)))
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return 0, fmt.Errorf("ExecReload=%s: %v: %s", l, err, out)
			}
		}
		return pid, nil
	}, "RELOADING=1", "READY=1")
}

func (s *shim) stop(unit string) error {
	if strings.HasSuffix(unit, ".socket") {
		unit = strings.TrimSuffix(unit, ".socket") + ".service" // one process holds both
	}
	pid, ok := s.mainPID(unit)
	if !ok {
		return nil
	}
	err := s.notified(unit, func() (int, error) { return pid, syscall.Kill(pid, syscall.SIGTERM) }, "STOPPING=1")
	if err != nil {
		return err
	}
	for deadline := time.Now().Add(45 * time.Second); !gone(pid); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return s.failed(unit, "did not stop within TimeoutStopSec=")
		}
	}
	return nil
}
