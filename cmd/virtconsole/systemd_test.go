package main

// The daemons under systemd, without a systemd PID 1: the unit files as
// systemd-analyze reads them, the server started from a unit's ExecStart=
// line with the README's config file, socket activation through
// systemd-socket-activate, and sd_notify datagrams on a NOTIFY_SOCKET the
// test holds.

import (
	"crypto/tls"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
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
			"CapabilityBoundingSet=\n", " --tls-dir " + unitPKIDir + " --connect-tls-dir " + unitPKIDir + "\n",
			"ExecReload=/bin/kill -HUP $MAINPID\n", "LogsDirectory=virtconsole\n", "WatchdogSec="} {
			b, _ := os.ReadFile(u)
			if !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %q", u, strings.TrimSpace(want))
			}
		}
		// Copied credentials would never be renewed while it runs.
		if groups := unitDirectives(t, u, "SupplementaryGroups"); len(groups) != 1 || !slices.Contains(strings.Fields(groups[0]), unitGroup) {
			t.Errorf("%s: SupplementaryGroups=%q, want one line with %s", u, groups, unitGroup)
		}
		if lc := unitDirectives(t, u, "LoadCredential"); len(lc) > 0 {
			t.Errorf("%s copies credentials once at start (LoadCredential=%s): a renewal would not reach it", u, lc[0])
		}
	}
}

// unitPKIDir is the cert dir the services read in place, as group
// unitGroup.
const (
	unitPKIDir = "/etc/pki/virtconsole"
	unitGroup  = "virtconsole"
)

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
// run it, with the binary under test for the installed one, pkiDir for
// /etc/pki/virtconsole and cfg for the config file it names.
func execStart(t *testing.T, unit, pkiDir, cfg string) []string {
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
		switch a {
		case unitPKIDir:
			args[i] = pkiDir
		case "/etc/virtconsole/server.toml":
			args[i] = cfg
		}
	}
	return args
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

// unitGroups returns the IDs of the groups the units' SupplementaryGroups=
// name: a group this host lacks (virtconsole before "groupadd", libvirt
// without libvirt) gets an ID no group has, which is what the files and
// the process are then given.
func unitGroups(t *testing.T, units ...string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	free := 61000
	var lines []string
	for _, u := range units {
		lines = append(lines, unitDirectives(t, u, "SupplementaryGroups")...)
	}
	for _, line := range lines {
		for _, name := range strings.Fields(line) {
			if _, ok := ids[name]; ok {
				continue
			}
			if g, err := user.LookupGroup(name); err == nil {
				ids[name], _ = strconv.Atoi(g.Gid)
				continue
			}
			for ; ; free++ {
				if _, err := user.LookupGroupId(strconv.Itoa(free)); err != nil {
					break
				}
			}
			ids[name] = free
			free++
		}
	}
	return ids
}

// serviceUser is who the services' sandbox runs them as, as far as a
// test without systemd can: as root, an unprivileged user (nobody, for
// DynamicUser=) in the groups gids (SupplementaryGroups=) only, with no
// capabilities at all (CapabilityBoundingSet=) and no_new_privs
// (NoNewPrivileges=), through setpriv(1); otherwise the test's own user.
// The system call filter and the mount namespace (ProtectSystem=) need
// systemd itself: systemd-analyze checks their settings, not their
// effect.
func serviceUser(t *testing.T, gids []int) (uid int, prefix []string) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), nil
	}
	ids := make([]string, len(gids))
	for i, g := range gids {
		ids[i] = strconv.Itoa(g)
	}
	return 65534, setprivArgs(needTool(t, "setpriv", "util-linux"), ids)
}

// setprivArgs is the command line prefix with which setpriv runs a
// command as serviceUser says: nobody in the groups gids only, no
// capabilities, no_new_privs.
func setprivArgs(setpriv string, gids []string) []string {
	groups := "--clear-groups"
	if len(gids) > 0 {
		groups = "--groups=" + strings.Join(gids, ",")
	}
	return []string{setpriv, "--reuid=65534", "--regid=65534", groups, "--no-new-privs",
		"--inh-caps=-all", "--bounding-set=-all", "--"}
}

// TestUnitExecStart: each service's ExecStart= line, run as the unit's
// sandbox runs it (serviceUser: nobody in the unit's SupplementaryGroups=
// only), reading the cert dir the unit names as "certs create --group
// virtconsole" makes it (0750, files 0640, that group), with the README's
// config file (addresses on loopback, a libvirt nobody answers, the token
// file in the state directory), starts a daemon that serves /healthz over
// TLS. A renewal in that directory ("certs create --force") is served on
// new connections by the same process, without a restart: found by the
// daemon's polling, and again at once by the unit's ExecReload= line. The
// README's file is valid for the resolver too.
func TestUnitExecStart(t *testing.T) {
	// Mostly a wait for the daemons' certificate polling (every 10 s): in
	// parallel with TestReloadRotatesCertificates, which waits for it too. Its own
	// directories, processes and ports (127.0.0.1:0); no global state.
	t.Parallel()
	units := []string{"virtconsole.service", "virtconsole-proxy.service"}
	gids := unitGroups(t, units...)
	uid, _ := serviceUser(t, nil)
	// A tree the service's user can reach (t.TempDir's are root's only):
	// the binary (installed 0755), the config file (root's, 0644), the
	// state directory (the user's, 0700) with the token file, the cert
	// dir (root's, group virtconsole).
	root := reachableDir(t)
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
	pkiDir := filepath.Join(root, "pki")
	certsCreate := func(t *testing.T, extra ...string) {
		t.Helper()
		r := run(t, nil, append([]string{"certs", "create", "--dir", pkiDir, "--host", "127.0.0.1", "--host", "localhost",
			"--group", strconv.Itoa(gids[unitGroup])}, extra...)...)
		if r.code != 0 {
			t.Fatalf("certs create %q: exit %d\n%s%s", extra, r.code, r.stdout, r.stderr)
		}
	}
	certsCreate(t)

	cfg := unitConfig(t, root, state, pkiDir)
	// Both units' daemons run at once, so that one renewal serves both
	// and the wait for their polling (every 10 s) is paid once.
	// (The daemons are the test's, not a subtest's: they outlive each step.)
	daemons := map[string]*daemon{}
	for _, unit := range units {
		var ids []int
		for _, line := range unitDirectives(t, unit, "SupplementaryGroups") {
			for _, name := range strings.Fields(line) {
				ids = append(ids, gids[name])
			}
		}
		_, prefix := serviceUser(t, ids)
		args := execStart(t, unit, pkiDir, cfg)
		args[0] = filepath.Join(root, "virtconsole")
		args = append(prefix, args...)
		d := startDaemonCmd(t, exec.Command(args[0], args[1:]...), unitListeningRE)
		healthz(t, pkiClient(t, pkiDir), d.addr)
		if prefix != nil {
			checkSandboxed(t, d.cmd.Process.Pid, ids)
		}
		daemons[unit] = d
	}

	// A renewal, no signal: each daemon's polling.
	certsCreate(t, "--force")
	for _, unit := range units {
		t.Run(unit+" renewal", func(t *testing.T) {
			d := daemons[unit]
			waitFor(t, 30*time.Second, "the renewed certificate, served by the running daemon", func() bool {
				return servedSerial(t, d.addr).Cmp(fileSerial(t, pkiDir)) == 0
			})
			healthz(t, pkiClient(t, pkiDir), d.addr)
		})
	}

	// Another, and "systemctl reload": the unit's ExecReload=, at once
	// (no polling; one renewal each, as the daemon's polling may come
	// while the other's reload runs).
	for _, unit := range units {
		t.Run(unit+" reload", func(t *testing.T) {
			d := daemons[unit]
			certsCreate(t, "--force")
			reloads := len(reloadedRE.FindAllString(d.log.String(), -1))
			reload := unitDirectives(t, unit, "ExecReload")
			if len(reload) != 1 {
				t.Fatalf("%s: ExecReload=%q, want one line", unit, reload)
			}
			rargs := strings.Fields(strings.ReplaceAll(reload[0], "$MAINPID", strconv.Itoa(d.cmd.Process.Pid)))
			if out, err := exec.Command(rargs[0], rargs[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("ExecReload=%s: %v\n%s", reload[0], err, out)
			}
			waitFor(t, 10*time.Second, "the reload's log line", func() bool {
				return len(reloadedRE.FindAllString(d.log.String(), -1)) > reloads
			})
			if got, want := servedSerial(t, d.addr), fileSerial(t, pkiDir); got.Cmp(want) != 0 {
				t.Fatalf("after ExecReload=: serves serial %v, want the renewed %v", got, want)
			}
			select {
			case <-d.done:
				t.Fatalf("the daemon exited: %s", d.log.String())
			default:
			}
		})
	}
	r := run(t, nil, "server", "resolver", "--config", cfg, "--print-config")
	if r.code != 0 || !strings.Contains(r.stdout, "require-client-cert = true # "+cfg+":") {
		t.Errorf("server resolver --print-config with the README's file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// unitListeningRE finds the proxy's address in a daemon's log, text or
// JSON (the README's [server] logs JSON).
var unitListeningRE = regexp.MustCompile(`msg="proxy listening" address=(\S+)|"msg":"proxy listening","address":"([^"]+)"`)

// reloadedRE matches a reload's success line, text or JSON.
var reloadedRE = regexp.MustCompile(`msg=reloaded |"msg":"reloaded"`)

// reachableDir returns a new directory, removed when the test ends, that
// every user can reach (t.TempDir's are root's only).
func reachableDir(t *testing.T) string {
	t.Helper()
	root, err := os.MkdirTemp("", "virtconsole-unit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// unitConfig writes the README's config file to dir with addresses on
// loopback, a libvirt nobody answers, state for the state and logs
// directories and pkiDir for the cert dir, and returns its path.
func unitConfig(t *testing.T, dir, state, pkiDir string) string {
	t.Helper()
	cfgText := readmeConfig(t)
	for old, new := range map[string]string{
		`":6443"`:               `"127.0.0.1:0"`,
		`"127.0.0.1:8081"`:      `"127.0.0.1:0"`,
		`"127.0.0.1:9464"`:      `"127.0.0.1:0"`,
		`"127.0.0.1:6444"`:      `"127.0.0.1:0"`,
		"qemu:///system":        "qemu:///system?socket=" + filepath.Join(dir, "no-libvirtd"),
		"/var/lib/virtconsole/": state + "/",
		"/var/log/virtconsole/": state + "/",
		unitPKIDir + "/":        pkiDir + "/",
	} {
		if !strings.Contains(cfgText, old) {
			t.Fatalf("the README's config file has no %s:\n%s", old, cfgText)
		}
		cfgText = strings.ReplaceAll(cfgText, old, new)
	}
	cfg := filepath.Join(dir, "server.toml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// checkSandboxed checks pid's credentials as serviceUser sets them: the
// daemon itself, since setpriv execs it in its place.
func checkSandboxed(t *testing.T, pid int, gids []int) {
	t.Helper()
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, g := range gids {
		want = append(want, strconv.Itoa(g))
	}
	slices.Sort(want)
	m := regexp.MustCompile(`\nGroups:[ \t]*([^\n]*)\n`).FindSubmatch(st)
	if m == nil {
		t.Fatalf("no Groups: in /proc/%d/status", pid)
	}
	got := strings.Fields(string(m[1]))
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the daemon's supplementary groups are %q, want the unit's %q", got, want)
	}
	for _, want := range []string{"\nUid:\t65534\t65534\t", "\nCapBnd:\t0000000000000000\n", "\nCapEff:\t0000000000000000\n", "\nNoNewPrivs:\t1\n"} {
		if !strings.Contains(string(st), want) {
			t.Errorf("the daemon's /proc status lacks %q:\n%s", want, st)
		}
	}
}

// pkiClient is an HTTPS client that trusts dir's CA as it is now.
func pkiClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	return &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(t, filepath.Join(dir, "ca-cert.pem"))}, Timeout: 10 * time.Second}
}

// servedSerial is the serial of the certificate a new TLS connection to
// addr is served (unverified: the caller compares it), or 0 when the
// handshake fails.
func servedSerial(t *testing.T, addr string) *big.Int {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Logf("TLS to %s: %v", addr, err)
		return new(big.Int)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// fileSerial is the serial of dir's server certificate.
func fileSerial(t *testing.T, dir string) *big.Int {
	t.Helper()
	creds, err := tlscreds.Load(dir, tlscreds.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	return creds.Cert.Leaf.SerialNumber
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
