package main

// The README's walkthroughs run as scripts, so that they cannot rot: the
// ```sh blocks of "By hand" and "Your own VM", in order, in bash with
// set -e, as root, with only these changes to the text:
//
//   - fixed ports (4555, 6443) become free ones, and ":6443" listens on
//     127.0.0.1 only (tests bind loopback);
//   - "myvm" is a test domain booting the tiny Linux guest, and
//     /etc/pki/virtconsole a temporary directory;
//   - after a line that starts a server in the background, the script
//     waits until its port answers (a person typing is slower than bash).

import (
	"cmp"
	"context"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirttest"
)

// readmeSection returns the shell lines of the ```sh blocks under the
// README heading "## name", up to the next "## " heading, with
// continuation lines joined.
func readmeSection(t *testing.T, name string) []string {
	t.Helper()
	return readmeBlocks(t, "## "+name, "\n## ")
}

// readmeSubsection is readmeSection for the heading "### name", up to the
// next "## " or "### " heading.
func readmeSubsection(t *testing.T, name string) []string {
	t.Helper()
	return readmeBlocks(t, "### "+name, "\n## ", "\n### ")
}

// readmeSteps is readmeSection for the walkthrough of "## name": its
// ```sh blocks before the first "### " heading and under those that start
// with a step number ("### 1. Install"), not under its reference
// subsections.
func readmeSteps(t *testing.T, name string) []string {
	t.Helper()
	parts := strings.Split(readmeText(t, "## "+name, "\n## "), "\n### ")
	text := parts[0]
	for _, p := range parts[1:] {
		if p != "" && p[0] >= '1' && p[0] <= '9' {
			text += "\n" + p
		}
	}
	return shLines(t, "## "+name, text)
}

// readmeText returns the README's text from the line heading up to the
// first of ends.
func readmeText(t *testing.T, heading string, ends ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", heading)
	}
	text = text[i+1:]
	for _, end := range ends {
		if j := strings.Index(text[1:], end); j >= 0 {
			text = text[:j+1]
		}
	}
	return text
}

// readmeBlocks returns the shell lines of the ```sh blocks after the
// README line heading, up to the first of ends, continuation lines joined.
func readmeBlocks(t *testing.T, heading string, ends ...string) []string {
	t.Helper()
	return shLines(t, heading, readmeText(t, heading, ends...))
}

// shLines returns the lines of the ```sh blocks in text, continuation
// lines joined; name is what text is, for the failure.
func shLines(t *testing.T, name, text string) []string {
	t.Helper()
	var lines []string
	in := false
	for _, l := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(l, "```sh"):
			in = true
		case strings.HasPrefix(l, "```"):
			in = false
		case in && len(lines) > 0 && strings.HasSuffix(lines[len(lines)-1], "\\"):
			lines[len(lines)-1] += "\n" + l
		case in:
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		t.Fatalf("README section %q has no sh block", name)
	}
	return lines
}

var backgroundServer = regexp.MustCompile(`server .*--listen \S*:(\d+).*&\s*$`)

// replacer applies subs in one pass (a replacement is not replaced
// again), the longest match first.
func replacer(subs map[string]string) *strings.Replacer {
	froms := make([]string, 0, len(subs))
	for from := range subs {
		froms = append(froms, from)
	}
	slices.SortFunc(froms, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	var pairs []string
	for _, from := range froms {
		pairs = append(pairs, from, subs[from])
	}
	return strings.NewReplacer(pairs...)
}

// runREADME runs lines as a bash script in dir with subs applied, and
// returns its output; the test fails unless it exits 0 within limit.
// Every process it starts is killed at the end. binDirs come first on
// the script's PATH.
func runREADME(t *testing.T, dir string, lines []string, subs map[string]string, limit time.Duration, binDirs ...string) string {
	t.Helper()
	return runREADMEEnv(t, dir, lines, subs, limit, nil, binDirs...)
}

// runREADMEEnv is runREADME with extra environment variables (which win).
func runREADMEEnv(t *testing.T, dir string, lines []string, subs map[string]string, limit time.Duration, extraEnv []string, binDirs ...string) string {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	r := replacer(subs)
	for _, l := range lines {
		l = r.Replace(l)
		script.WriteString(l + "\n")
		if m := backgroundServer.FindStringSubmatch(l); m != nil {
			fmt.Fprintf(&script, "for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/%s) 2>/dev/null && break; sleep 0.1; done\n", m[1])
		}
	}
	t.Logf("script:\n%s", script.String())
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = env(append([]string{"PATH=" + strings.Join(append(binDirs, filepath.Dir(vcBinary), filepath.Join(runtime.GOROOT(), "bin"), os.Getenv("PATH")), ":")}, extraEnv...)...)
	cmd.Stdin = nil // /dev/null: the interactive lines end at once
	// A file, not a pipe: the background jobs keep their stdout open
	// after the script ends, and Wait would wait for them.
	out, err := os.Create(filepath.Join(t.TempDir(), "output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The background jobs (QEMU, servers) share the script's group.
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	b, rerr := os.ReadFile(out.Name())
	if rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("the README's script failed (%v); its output:\n%s", err, b)
	}
	t.Logf("its output:\n%s", b)
	return string(b)
}

// copyModule copies the module's files (what git tracks or would track)
// to a new directory, for scripts that build from a checkout.
func copyModule(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	out, err := exec.Command("git", "-C", "../..", "ls-files", "-co", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join("../..", f)
		fi, err := os.Lstat(src)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, or not a file
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
		in, err := os.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		w, err := os.OpenFile(filepath.Join(dst, f), os.O_CREATE|os.O_WRONLY, fi.Mode().Perm())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(w, in)
		in.Close()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// needRoot: the walkthroughs install packages and use libvirt.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the README's walkthroughs run as root, and CI must run them")
		}
		t.Skip("the README's walkthroughs run as root")
	}
}

// TestREADMEByHand: the "By hand" walkthrough, from build to the guest's
// answer through the proxy.
func TestREADMEByHand(t *testing.T) {
	needRoot(t)
	qemutest.Require(t)
	qemutest.LinuxGuest(t) // the kernel and busybox packages, or a clear failure
	dir := copyModule(t)
	out := runREADME(t, dir, readmeSection(t, "By hand"), map[string]string{
		"4555": strconv.Itoa(qemutest.FreePort(t)),
		"6443": strconv.Itoa(qemutest.FreePort(t)),
	}, 5*time.Minute)
	if !strings.Contains(out, "Linux (none)") {
		t.Fatalf("no answer to uname -a from the guest in the output:\n%s", out)
	}
}

// TestREADMEYourOwnVM: the "Your own VM" walkthrough against a libvirt
// domain with a pty serial console: directly, then through the server.
func TestREADMEYourOwnVM(t *testing.T) {
	needRoot(t)
	d := libvirttest.Start(t)
	kernel, initrd := libvirttest.LinuxGuest(t)
	dom := d.NewDomain(t, libvirttest.DomainOptions{Kernel: kernel, Initrd: initrd, Cmdline: qemutest.GuestCmdline})
	// The walkthrough is for a running VM: wait until its shell answers.
	waitFor(t, 90*time.Second, "the guest's shell", func() bool {
		ok, _ := askInPipe(t, dom.Name)
		return ok
	})
	port := strconv.Itoa(qemutest.FreePort(t))
	out := runREADME(t, t.TempDir(), readmeSection(t, "Your own VM"), map[string]string{
		"myvm":                 dom.Name,
		"--listen :6443":       "--listen 127.0.0.1:" + port,
		"127.0.0.1:6443":       "127.0.0.1:" + port,
		"/etc/pki/virtconsole": filepath.Join(t.TempDir(), "pki"),
	}, 3*time.Minute)
	if n := strings.Count(out, "Linux (none)"); n < 2 {
		t.Fatalf("want uname -a answered directly and through the server, got %d answers:\n%s", n, out)
	}
}

// TestREADMEScripting: the "Scripting a VM" walkthrough, as a CI job would
// run it: the tiny guest with a login prompt on its TLS serial chardev and
// a shell on its VGA console (VeNCrypt x509), the proxy in front of both,
// a client profile written by "config set" (in a config home of the
// test's own), then the job: log in and run a command on the serial
// console, type on the screen and read the result on the serial console,
// press keys, save a screenshot. Ports are free ones; the VNC display is
// the one of a free port.
func TestREADMEScripting(t *testing.T) {
	qemutest.Require(t)
	kernel, _ := qemutest.LinuxGuest(t) // the kernel and busybox packages, or a clear failure
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	dir := copyModule(t)
	vncPort := qemutest.FreePort(t)
	for vncPort < 5900 {
		vncPort = qemutest.FreePort(t)
	}
	configHome := t.TempDir()
	out := runREADMEEnv(t, dir, readmeSection(t, "Scripting a VM"), map[string]string{
		"4555":           strconv.Itoa(qemutest.FreePort(t)),
		"6443":           strconv.Itoa(qemutest.FreePort(t)),
		"127.0.0.1:1,":   fmt.Sprintf("127.0.0.1:%d,", vncPort-5900),
		"127.0.0.1:5901": "127.0.0.1:" + strconv.Itoa(vncPort),
	}, 5*time.Minute, []string{"XDG_CONFIG_HOME=" + configHome})

	// The login, and the command run after it.
	// The answer typed on the screen, read on the serial port: a line of
	// its own (the guest's tty ends lines with \r\n).
	for _, want := range []string{qemutest.GuestHostname + " login: ", "\n" + release + "\r\n", "\n42\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in the job's output", want)
		}
	}
	// The profile "config set" wrote, for this user only.
	cfg := filepath.Join(configHome, "virtconsole", "config.toml")
	if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the client config %s: %v; want mode 0600", cfg, err)
	}
	// The screenshot: a PNG of the guest's VGA text console (80x25 cells
	// of 9x16 pixels), not blank.
	f, err := os.Open(filepath.Join(dir, "screen.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screen.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 720 || b.Dy() != 400 {
		t.Errorf("screen.png is %dx%d, want 720x400", b.Dx(), b.Dy())
	}
	colours := map[color.Color]bool{}
	for y := 0; y < img.Bounds().Dy(); y += 4 {
		for x := 0; x < img.Bounds().Dx(); x += 3 {
			colours[img.At(x, y)] = true
		}
	}
	if len(colours) < 2 {
		t.Errorf("screen.png is one colour: nothing of the guest's screen")
	}
}

// TestREADMEOperating: the "Operating" walkthrough's numbered steps
// (install, config file, certificates, start, observe, reload, renewal),
// in order, as root, with these changes besides runREADME's:
//
//   - systemctl is a shim (systemctl_shim_test.go): there is no systemd
//     PID 1 here, so it starts the installed units' ExecStart= as their
//     sandbox would, through setpriv and systemd-socket-activate;
//   - /etc, /var and /usr/local are a temporary tree, so that nothing of
//     the host's is replaced (it has /etc/systemd/system, /var/lib and
//     /var/log, as a Debian host does), and the group virtconsole is a
//     test group, deleted at the end;
//   - 6443, 6444 and 9464 are free ports, and the libvirt URI a socket
//     nobody answers: libvirtd, shared with other tests, is left alone
//     (the server runs without it, answering 503 for its consoles);
//   - server.toml, which the README says to save, is its ```toml block.
//
// Then the test checks what the walkthrough says it shows, and that the
// renewed certificate is the one served, by the process that started.
func TestREADMEOperating(t *testing.T) {
	needRoot(t)
	for tool, pkg := range map[string]string{"setpriv": "util-linux", "systemd-socket-activate": "systemd", "curl": "curl",
		"make": "make", "groupadd": "passwd"} {
		needTool(t, tool, pkg)
	}
	dir := copyModule(t)
	root := reachableDir(t)
	for _, d := range []string{"etc/systemd/system", "var/lib", "var/log", "usr/local", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	group := fmt.Sprintf("vctest%d", os.Getpid())
	t.Cleanup(func() { exec.Command("groupdel", group).Run() })
	proxyPort, metricsPort := strconv.Itoa(qemutest.FreePort(t)), strconv.Itoa(qemutest.FreePort(t))
	subs := map[string]string{
		"/usr/local": root + "/usr/local", "/etc/": root + "/etc/", "/var/": root + "/var/",
		"6443": proxyPort, "6444": strconv.Itoa(qemutest.FreePort(t)), "9464": metricsPort,
		"qemu:///system":       "qemu:///system?socket=" + filepath.Join(root, "no-libvirtd"),
		"--system virtconsole": "--system " + group,
		"--group virtconsole":  "--group " + group,
	}
	if err := os.WriteFile(filepath.Join(dir, "server.toml"), []byte(replacer(subs).Replace(readmeConfig(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	shim := writeSystemctlShim(t, shimConfig{Units: filepath.Join(root, "etc/systemd/system"), Run: filepath.Join(root, "run"),
		Subs: subs, Groups: map[string]string{unitGroup: group}})
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(root, "run", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, b)
			}
		}
	})

	out := runREADME(t, dir, readmeSteps(t, "Operating"), subs, 8*time.Minute, shim)
	for _, want := range []string{
		"all 27 checks passed",                 // certs check
		"\nok\n",                               // /healthz
		`virtconsole_last_reload_successful 1`, // metrics, after the reload too
		`virtconsole_reloads_total{result="ok"} 1`,
		"\n400\n", `virtconsole_requests_refused_total{status="400"} 1`, `"event":"refusal"`, `"status":400`, // a refusal, counted and audited
		"no live sessions", // sessions list
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the walkthrough's output lacks %q", want)
		}
	}
	if n := strings.Count(out, "\nok\n"); n != 2 {
		t.Errorf("/healthz answered %d times, want 2 (at the start, after the renewal)", n)
	}

	// The renewal is served by the process that started, not a new one.
	pki := filepath.Join(root, "etc/pki/virtconsole")
	if got, want := servedSerial(t, "127.0.0.1:"+proxyPort), fileSerial(t, pki); got.Cmp(want) != 0 {
		t.Errorf("serves serial %v, want the renewed %v", got, want)
	}
	pidFile := filepath.Join(root, "run", "virtconsole.service.pid")
	log, _ := os.ReadFile(filepath.Join(root, "run", "virtconsole.service.log"))
	if n := strings.Count(string(log), `"msg":"proxy listening"`); n != 1 {
		t.Errorf("the server started %d times, want once:\n%s", n, log)
	}
	for _, want := range []string{`"socket_activated":true`, `"msg":"certificates reloaded"`, `"msg":"reloaded"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the server's log lacks %s:\n%s", want, log)
		}
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	gids := unitGroups(t, "virtconsole.service")
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	gids[unitGroup], _ = strconv.Atoi(g.Gid)
	var ids []int
	for _, id := range gids {
		ids = append(ids, id)
	}
	checkSandboxed(t, pid, ids)

	// And the shim's stop: a drained exit.
	cmd := exec.Command(filepath.Join(shim, "systemctl"), "stop", "virtconsole.service")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("systemctl stop: %v\n%s", err, b)
	}
}
