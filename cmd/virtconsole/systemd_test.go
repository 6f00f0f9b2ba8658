package main

// The daemons under systemd, without a systemd PID 1: the unit files as
// systemd-analyze reads them, the server started from a unit's ExecStart=
// line with the README's config file, socket activation through
// systemd-socket-activate, and sd_notify datagrams on a NOTIFY_SOCKET the
// test holds.

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// unitFiles are the units shipped next to the command.
var unitFiles = []string{"virtconsole.service", "virtconsole-proxy.service", "virtconsole.socket"}

// installedBinary is where the units' ExecStart= expects virtconsole:
// "make install"'s default PREFIX.
const installedBinary = "/usr/local/bin/virtconsole"

// unitDirectives returns the values of key in a unit file, in order.
func unitDirectives(t *testing.T, unit, key string) []string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestUnitFiles: systemd-analyze verify accepts the units, their
// documentation included, and systemd-analyze security rates each
// service's sandbox exposed at most 2.0 of 10 ("OK").
//
// verify checks that ExecStart='s program exists and is executable, and
// the test does not install virtconsole into /usr/local/bin: it verifies
// copies of the units whose ExecStart= names the binary under test, all
// else unchanged. The man pages named by Documentation= are looked up
// with man(1) in the repository's man/ (through MANPATH).
func TestUnitFiles(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	needTool(t, "man", "man-db")
	dir := t.TempDir()
	var paths []string
	for _, u := range unitFiles {
		b, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if strings.HasSuffix(u, ".service") {
			if n := strings.Count(text, "ExecStart="+installedBinary+" "); n != 1 {
				t.Fatalf("%s: want one ExecStart=%s ..., found %d", u, installedBinary, n)
			}
			text = strings.ReplaceAll(text, "ExecStart="+installedBinary+" ", "ExecStart="+vcBinary+" ")
		}
		p := filepath.Join(dir, u)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	manDir := filepath.Join(t.TempDir(), "man")
	if err := os.MkdirAll(manDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(repoRoot(t), "man"), filepath.Join(manDir, "man1")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, append([]string{"verify"}, paths...)...)
	cmd.Env = env("MANPATH=" + manDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "virtconsole") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}

	for _, u := range paths[:2] {
		cmd := exec.Command(analyze, "security", "--offline=true", "--threshold=20", "--no-pager", u)
		cmd.Env = env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s: %v\n%s", filepath.Base(u), err, out)
		}
		if m := regexp.MustCompile(`Overall exposure level for \S+: (\S+)`).FindSubmatch(out); m == nil {
			t.Errorf("systemd-analyze security %s: no exposure level in\n%s", filepath.Base(u), out)
		} else {
			t.Logf("%s: exposure %s", filepath.Base(u), m[1])
		}
	}

	// What the issue asks of the services, said where a reader looks.
	for _, u := range unitFiles[:2] {
		for _, want := range []string{"Type=notify", "DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes",
			"CapabilityBoundingSet=\n", "LoadCredential=server-key.pem:", "LoadCredential=client-key.pem:", "WatchdogSec="} {
			b, _ := os.ReadFile(u)
			if !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %q", u, strings.TrimSpace(want))
			}
		}
	}
}

// readmeConfig returns the config file the README documents: its first
// ```toml block.
func readmeConfig(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n```toml\n")
	block, _, ok2 := strings.Cut(rest, "\n```\n")
	if !ok || !ok2 {
		t.Fatal("README.md has no ```toml block")
	}
	return block + "\n"
}

// execStart returns a service's ExecStart= command line as systemd would
// run it with the LoadCredential= files in credDir: ${CREDENTIALS_DIRECTORY}
// expanded, the binary under test for the installed one, and cfg for the
// config file it names.
func execStart(t *testing.T, unit, credDir, cfg string) []string {
	t.Helper()
	lines := unitDirectives(t, unit, "ExecStart")
	if len(lines) != 1 {
		t.Fatalf("%s: %d ExecStart= lines", unit, len(lines))
	}
	// No quoting in these lines: fields are words (systemd.service(5)'s
	// rules agree for such lines).
	args := strings.Fields(lines[0])
	if args[0] != installedBinary {
		t.Fatalf("%s: ExecStart= runs %s, want %s", unit, args[0], installedBinary)
	}
	args[0] = vcBinary
	for i, a := range args {
		a = strings.ReplaceAll(a, "${CREDENTIALS_DIRECTORY}", credDir)
		if a == "/etc/virtconsole/server.toml" {
			a = cfg
		}
		args[i] = a
	}
	return args
}

// credentials lays out in dir what LoadCredential= gives the service:
// each credential's file, from the test's PKI, under its name, 0400 and
// owned by the service's user, as systemd makes them.
func credentials(t *testing.T, unit, pkiDir, dir string, uid int) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o500|0o200); err != nil {
		t.Fatal(err)
	}
	for _, lc := range unitDirectives(t, unit, "LoadCredential") {
		id, src, ok := strings.Cut(lc, ":")
		if !ok || !strings.HasPrefix(src, "/etc/pki/virtconsole/") {
			t.Fatalf("%s: LoadCredential=%s", unit, lc)
		}
		b, err := os.ReadFile(filepath.Join(pkiDir, filepath.Base(src)))
		if err != nil {
			t.Fatal(err)
		}
		writeOwned(t, filepath.Join(dir, id), b, 0o400, uid)
	}
	chown(t, dir, uid)
	return dir
}

// writeOwned writes a file with mode perm, owned by uid.
func writeOwned(t *testing.T, path string, b []byte, perm os.FileMode, uid int) {
	t.Helper()
	if err := os.WriteFile(path, b, perm); err != nil {
		t.Fatal(err)
	}
	chown(t, path, uid)
}

func chown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// serviceUser is who the services' sandbox runs them as, as far as a
// test without systemd can: as root, an unprivileged user (nobody) with
// no supplementary groups, no capabilities at all (CapabilityBoundingSet=)
// and no_new_privs (NoNewPrivileges=), through setpriv(1); otherwise the
// test's own user. The system call filter and the mount namespace
// (ProtectSystem=) need systemd itself: systemd-analyze checks their
// settings, not their effect.
func serviceUser(t *testing.T) (uid int, prefix []string) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), nil
	}
	setpriv := needTool(t, "setpriv", "util-linux")
	return 65534, []string{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
		"--inh-caps=-all", "--bounding-set=-all", "--"}
}

// TestUnitExecStart: each service's ExecStart= line, run as the unit's
// sandbox runs it (serviceUser), with its credentials laid out as
// LoadCredential= says and the README's config file (addresses on
// loopback, a libvirt nobody answers, the token file in the state
// directory), starts a daemon that serves /healthz over TLS; the README's
// file is valid for the resolver too.
func TestUnitExecStart(t *testing.T) {
	dir := pki(t)
	uid, prefix := serviceUser(t)
	// A tree the service's user can reach (t.TempDir's are root's only):
	// the binary (installed 0755), the config file (root's, 0644), the
	// state directory (the user's, 0700) with the token file.
	root, err := os.MkdirTemp("", "virtconsole-unit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(vcBinary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "virtconsole"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(root, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	chown(t, state, uid)
	tokens := filepath.Join(state, "tokens.json")
	writeOwned(t, tokens, []byte(`{"t": {"type": "serial", "address": "127.0.0.1:1"}}`), 0o600, uid)

	cfgText := readmeConfig(t)
	for old, new := range map[string]string{
		`":6443"`:                          `"127.0.0.1:0"`,
		`"127.0.0.1:8081"`:                 `"127.0.0.1:0"`,
		"qemu:///system":                   "qemu:///system?socket=" + filepath.Join(root, "no-libvirtd"),
		"/var/lib/virtconsole/tokens.json": tokens,
	} {
		if !strings.Contains(cfgText, old) {
			t.Fatalf("the README's config file has no %s:\n%s", old, cfgText)
		}
		cfgText = strings.ReplaceAll(cfgText, old, new)
	}
	cfg := filepath.Join(root, "server.toml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, filepath.Join(dir, "ca-cert.pem"))}, Timeout: 10 * time.Second}
	for i, unit := range []string{"virtconsole.service", "virtconsole-proxy.service"} {
		t.Run(unit, func(t *testing.T) {
			creds := credentials(t, unit, dir, filepath.Join(root, "credentials"+strconv.Itoa(i)), uid)
			args := execStart(t, unit, creds, cfg)
			args[0] = filepath.Join(root, "virtconsole")
			args = append(prefix, args...)
			// The README's [server] logs JSON.
			re := regexp.MustCompile(`listening" address=(\S+)|"msg":"proxy listening","address":"([^"]+)"`)
			d := startDaemonCmd(t, exec.Command(args[0], args[1:]...), re)
			healthz(t, client, d.addr)
			if prefix != nil {
				// setpriv execs the daemon in its place: the same process.
				st, err := os.ReadFile("/proc/" + strconv.Itoa(d.cmd.Process.Pid) + "/status")
				if err != nil {
					t.Fatal(err)
				}
				if groups := regexp.MustCompile(`\nGroups:[ \t]*([^\n]*)\n`).FindSubmatch(st); groups == nil || len(groups[1]) > 0 {
					t.Errorf("the daemon has supplementary groups: %q", groups)
				}
				for _, want := range []string{"\nUid:\t65534\t65534\t", "\nCapBnd:\t0000000000000000\n", "\nCapEff:\t0000000000000000\n", "\nNoNewPrivs:\t1\n"} {
					if !strings.Contains(string(st), want) {
						t.Errorf("the daemon's /proc status lacks %q:\n%s", want, st)
					}
				}
			}
		})
	}
	r := run(t, nil, "server", "resolver", "--config", cfg, "--print-config")
	if r.code != 0 || !strings.Contains(r.stdout, "require-client-cert = true # "+cfg+":") {
		t.Errorf("server resolver --print-config with the README's file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// healthz gets https://addr/healthz and wants "ok".
func healthz(t *testing.T, client *http.Client, addr string) {
	t.Helper()
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Fatalf("/healthz: %s %q", resp.Status, b)
	}
}

// TestSocketActivation: systemd-socket-activate listens and hands its
// socket to "server proxy" (LISTEN_FDS), which serves on it, TLS
// included, instead of --listen (here an address another socket holds,
// which it could not have listened on): /healthz answers, and a serial
// session reaches QEMU's chardev.
func TestSocketActivation(t *testing.T) {
	activate := needTool(t, "systemd-socket-activate", "systemd")
	qemutest.Require(t)
	dir := pki(t)
	q, qaddr := qemutest.StartSerial(t, qemutest.SerialOptions{Paused: true})
	tokens := writeTokens(t, map[string]resolver.Console{"sa-token": {Type: "serial", Address: qaddr, Insecure: true}})
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	addr := "127.0.0.1:" + strconv.Itoa(qemutest.FreePort(t))
	log := &syncBuffer{}
	cmd := exec.Command(activate, "--listen", addr, vcBinary, "server", "proxy", "--listen", held.Addr().String(),
		"--tls-dir", dir, "--connect-insecure", "--tokens", tokens)
	cmd.Stdout, cmd.Stderr = log, log
	done := launch(t, cmd, log.String)
	waitFor(t, 10*time.Second, "systemd-socket-activate listening", func() bool {
		select {
		case <-done:
			t.Fatalf("systemd-socket-activate exited: %s", log.String())
		default:
		}
		return strings.Contains(log.String(), "Listening on "+addr)
	})
	// The first connection starts the daemon, which then answers it.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, filepath.Join(dir, "ca-cert.pem"))}, Timeout: 30 * time.Second}
	healthz(t, client, addr)
	if want := `msg="proxy listening" address=` + addr + ` tls=true socket_activated=true`; !strings.Contains(log.String(), want) {
		t.Fatalf("log lacks %q:\n%s", want, log.String())
	}

	c := startSerial(t, "--proxy", "wss://"+addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "sa-token"))
	q.WaitChardevConnected("s0", 30*time.Second)
	q.Cont()
	waitFor(t, 60*time.Second, "the SeaBIOS banner through the handed socket", func() bool {
		return strings.Contains(c.out.String(), bannerEnd)
	})
	c.stdin.Close()
	if code := c.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("serial exit code %d: %s", code, c.errb.String())
	}
}

// TestSocketActivationTwoSockets: a .socket unit with two ListenStream=
// lines hands two sockets; the daemon serves one, so it refuses to start
// with a line that says what to fix, a usage error (exit 1).
func TestSocketActivationTwoSockets(t *testing.T) {
	activate := needTool(t, "systemd-socket-activate", "systemd")
	a, b := "127.0.0.1:"+strconv.Itoa(qemutest.FreePort(t)), "127.0.0.1:"+strconv.Itoa(qemutest.FreePort(t))
	log := &syncBuffer{}
	cmd := exec.Command(activate, "--listen", a, "--listen", b, vcBinary, "server", "proxy", "--listen-insecure", "--connect-insecure",
		"--tokens", writeTokens(t, map[string]resolver.Console{}))
	cmd.Stdout, cmd.Stderr = log, log
	done := launch(t, cmd, log.String)
	waitFor(t, 10*time.Second, "systemd-socket-activate listening", func() bool {
		return strings.Contains(log.String(), "Listening on "+b)
	})
	c, err := net.DialTimeout("tcp", a, 10*time.Second) // starts the daemon
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the daemon did not exit:\n%s", log.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1:\n%s", code, log.String())
	}
	if want := "virtconsole: socket activation handed 2 file descriptors; virtconsole serves one stream socket: give its .socket unit one ListenStream=\n"; !strings.HasSuffix(log.String(), want) {
		t.Errorf("output does not end with %q:\n%s", want, log.String())
	}
}

// TestNotifySocket: the real binary, given a NOTIFY_SOCKET (a unixgram
// socket the test holds, as systemd would) and WATCHDOG_USEC, sends
// READY=1 once it listens, WATCHDOG=1 every half period, and STOPPING=1
// on SIGTERM, then exits 0.
func TestNotifySocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(20 * time.Second):
			t.Fatalf("no sd_notify datagram while waiting for %s", what)
			return ""
		}
	}

	d := &daemon{log: &syncBuffer{}}
	d.cmd = exec.Command(vcBinary, "server", "proxy", "--listen", "127.0.0.1:0", "--listen-insecure", "--connect-insecure",
		"--tokens", writeTokens(t, map[string]resolver.Console{}))
	d.cmd.Env = env("NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=200000")
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.done = launch(t, d.cmd, d.log.String)

	if m := next("READY=1"); m != "READY=1" {
		t.Fatalf("first datagram %q, want READY=1", m)
	}
	// The log line is written before READY=1 is sent, but reaches us
	// through a pipe and a copying goroutine: it may come a little later.
	waitFor(t, 10*time.Second, "the listening line", func() bool { return listeningRE.MatchString(d.log.String()) })
	start := time.Now()
	for i := 0; i < 3; i++ {
		if m := next("WATCHDOG=1"); m != "WATCHDOG=1" {
			t.Fatalf("datagram %q, want WATCHDOG=1", m)
		}
	}
	if e := time.Since(start); e > 5*time.Second {
		t.Errorf("three watchdog pings took %v at a 100 ms period", e)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for m := next("STOPPING=1"); m != "STOPPING=1"; m = next("STOPPING=1") {
		if m != "WATCHDOG=1" {
			t.Fatalf("datagram %q before STOPPING=1", m)
		}
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, d.log.String())
	}
}

// syscallGroups returns systemd's system call groups ("@name" to its
// entries: calls and other groups), from systemd-analyze syscall-filter.
func syscallGroups(t *testing.T, analyze string) map[string][]string {
	t.Helper()
	out, err := exec.Command(analyze, "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		switch f := strings.TrimSpace(line); {
		case f == "" || strings.HasPrefix(f, "#"):
		case !strings.HasPrefix(line, " "):
			cur = f
		case cur != "":
			groups[cur] = append(groups[cur], f)
		}
	}
	if len(groups["@system-service"]) == 0 {
		t.Fatalf("systemd-analyze syscall-filter lists no @system-service:\n%s", out)
	}
	return groups
}

// expandSyscalls adds the calls that name (a call or a group) stands for.
func expandSyscalls(groups map[string][]string, name string, into map[string]bool) {
	if !strings.HasPrefix(name, "@") {
		into[name] = true
		return
	}
	for _, e := range groups[name] {
		expandSyscalls(groups, e, into)
	}
}

// TestUnitSyscalls: what the service does while it starts, serves TLS
// requests and drains on SIGTERM uses only the system calls and socket
// families its unit allows (SystemCallFilter=, RestrictAddressFamilies=),
// as strace(1) records them from the released (non-race) build run by
// the unit's ExecStart= line; a call the filter denies would fail with
// EPERM (SystemCallErrorNumber=) under systemd.
func TestUnitSyscalls(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "systemd")
	strace := needTool(t, "strace", "strace")
	groups := syscallGroups(t, analyze)
	bin := filepath.Join(t.TempDir(), "virtconsole")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := pki(t)
	tokens := writeTokens(t, map[string]resolver.Console{"t": {Type: "serial", Address: "127.0.0.1:1", Insecure: true}})
	cfg := filepath.Join(t.TempDir(), "server.toml")
	conf := "[server]\nlisten = \"127.0.0.1:0\"\nconnect = [\"qemu:///system?socket=" + filepath.Join(t.TempDir(), "no-libvirtd") + "\"]\n" +
		"[proxy]\nlisten = \"127.0.0.1:0\"\ntokens = \"" + tokens + "\"\nconnect-insecure = true\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, filepath.Join(dir, "ca-cert.pem"))}, Timeout: 10 * time.Second}
	for _, unit := range []string{"virtconsole.service", "virtconsole-proxy.service"} {
		t.Run(unit, func(t *testing.T) {
			allowed, denied := map[string]bool{}, map[string]bool{}
			for _, v := range unitDirectives(t, unit, "SystemCallFilter") {
				into := allowed
				if v, ok := strings.CutPrefix(v, "~"); ok {
					for _, n := range strings.Fields(v) {
						expandSyscalls(groups, n, denied)
					}
					continue
				}
				for _, n := range strings.Fields(v) {
					expandSyscalls(groups, n, into)
				}
			}
			families := map[string]bool{}
			for _, v := range unitDirectives(t, unit, "RestrictAddressFamilies") {
				for _, f := range strings.Fields(v) {
					families[f] = true
				}
			}
			if len(allowed) == 0 || len(families) == 0 {
				t.Fatalf("%s has no SystemCallFilter= allow list or RestrictAddressFamilies=", unit)
			}

			trace := filepath.Join(t.TempDir(), "strace")
			args := execStart(t, unit, dir, cfg)
			args[0] = bin
			d := startDaemonCmd(t, exec.Command(strace, append([]string{"-f", "-qq", "-o", trace, "--"}, args...)...), listeningRE)
			healthz(t, client, d.addr)
			// A websocket attempt with an unknown token: the resolver
			// and the refusal path too.
			if resp, err := client.Get("https://" + d.addr + "/websockify?token=unknown"); err == nil {
				resp.Body.Close()
			}
			// strace would detach on SIGTERM: the daemon, its child, gets it.
			pid := tracee(t, d.cmd.Process.Pid)
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-d.done:
			case <-time.After(60 * time.Second):
				t.Fatal("no exit after SIGTERM")
			}
			b, err := os.ReadFile(trace)
			if err != nil {
				t.Fatal(err)
			}
			callRE := regexp.MustCompile(`^\d+\s+([a-z0-9_]+)\(`)
			familyRE := regexp.MustCompile(`^\d+\s+socket\((AF_[A-Z0-9]+)`)
			used := map[string]bool{}
			for _, line := range strings.Split(string(b), "\n") {
				if m := callRE.FindStringSubmatch(line); m != nil {
					used[m[1]] = true
				}
				if m := familyRE.FindStringSubmatch(line); m != nil && !families[m[1]] {
					t.Errorf("socket family %s is not in RestrictAddressFamilies=: %s", m[1], line)
				}
			}
			if len(used) < 20 {
				t.Fatalf("strace recorded only %d system calls:\n%s", len(used), b)
			}
			for c := range used {
				if !allowed[c] || denied[c] {
					t.Errorf("%s calls %s, which SystemCallFilter= denies", unit, c)
				}
			}
			n := 0
			for c := range allowed {
				if !denied[c] {
					n++
				}
			}
			t.Logf("%d distinct system calls, all among the %d the filter allows", len(used), n)
		})
	}
}

// tracee returns the pid of strace's (pid's) one child.
func tracee(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		t.Fatalf("strace has children %q, want one", f)
	}
	child, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return child
}
