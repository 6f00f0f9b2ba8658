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
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
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

// readmeBlocks returns the shell lines of the ```sh blocks after the
// README line heading, up to the first of ends, continuation lines joined.
func readmeBlocks(t *testing.T, heading string, ends ...string) []string {
	t.Helper()
	name := heading
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no section %q", name)
	}
	text = text[i+1:]
	for _, end := range ends {
		if j := strings.Index(text[1:], end); j >= 0 {
			text = text[:j+1]
		}
	}
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

// runREADME runs lines as a bash script in dir with subs applied, and
// returns its output; the test fails unless it exits 0 within limit.
// Every process it starts is killed at the end.
func runREADME(t *testing.T, dir string, lines []string, subs map[string]string, limit time.Duration) string {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for _, l := range lines {
		for from, to := range subs {
			l = strings.ReplaceAll(l, from, to)
		}
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
	cmd.Env = env("PATH=" + filepath.Dir(vcBinary) + ":" + filepath.Join(runtime.GOROOT(), "bin") + ":" + os.Getenv("PATH"))
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
