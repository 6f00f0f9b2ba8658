package libvirttest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
)

// SSHServer is an sshd that StartSSH runs in front of the test libvirtd.
type SSHServer struct {
	// URI reaches the libvirtd through the sshd, as a client reaches a
	// remote hypervisor: root logs in with a fresh key (?keyfile=), the
	// host key is checked against a known_hosts file (?known_hosts=), and
	// libvirtd's unix socket is forwarded over the SSH connection.
	URI string
	pid int
}

// Processes counts the processes serving SSH connections, the
// listener's descendants (each connection's process starts its own
// session, so its process group would not do): 0 once every connection
// is closed.
func (s *SSHServer) Processes() int { return len(descendants(s.pid)) }

// descendants returns the processes below pid.
func descendants(pid int) []int {
	parent := map[int]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		pidText, rest, ok := strings.Cut(string(b), " (")
		_, rest, ok2 := strings.Cut(rest, ") ")
		fields := strings.Fields(rest)
		if !ok || !ok2 || len(fields) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(pidText)
		ppid, _ := strconv.Atoi(fields[1])
		parent[pid] = ppid
	}
	var below []int
	for child := range parent {
		for p := parent[child]; p > 1; p = parent[p] {
			if p == pid {
				below = append(below, child)
				break
			}
		}
	}
	return below
}

// StartSSH starts an sshd on a free loopback port for the rest of the
// test, in front of this libvirtd.
func (d *Daemon) StartSSH(t testing.TB) *SSHServer {
	t.Helper()
	paths := qemutest.Need(t, "sshd", "ssh-keygen")
	sshd, keygen := paths[0], paths[1]
	dir := t.TempDir()
	hostKey, userKey := filepath.Join(dir, "host_key"), filepath.Join(dir, "id_ed25519")
	for _, k := range []string{hostKey, userKey} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	userPub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	port := qemutest.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	authorized, knownHosts, config := filepath.Join(dir, "authorized_keys"), filepath.Join(dir, "known_hosts"), filepath.Join(dir, "sshd_config")
	keyType, keyData, _ := strings.Cut(strings.TrimSpace(string(hostPub)), " ")
	keyData, _, _ = strings.Cut(keyData, " ") // drop the comment
	files := map[string]string{
		authorized: string(userPub),
		knownHosts: fmt.Sprintf("[127.0.0.1]:%d %s %s\n", port, keyType, keyData),
		// StrictModes off: the files live in the test's temporary
		// directory. No PAM, no passwords: the key is the only way in.
		config: fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
PidFile %s
`, port, hostKey, authorized, filepath.Join(dir, "sshd.pid")),
	}
	for p, content := range files {
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// sshd's privilege separation directory, which systemd would make.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}

	// The log is a file, not a pipe: sshd's per-connection children
	// inherit it, and Wait would wait for them.
	logFile := filepath.Join(dir, "sshd.log")
	lf, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	logText := func() string { b, _ := os.ReadFile(logFile); return string(b) }
	cmd := exec.Command(sshd, "-D", "-e", "-f", config)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// Connections' processes too: each runs in its own session.
		for _, p := range descendants(cmd.Process.Pid) {
			syscall.Kill(p, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd log:\n%s", logText())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("sshd exited: %s", logText())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on %s after 10s: %s", addr, logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
	q := url.Values{"keyfile": {userKey}, "known_hosts": {knownHosts}}
	return &SSHServer{URI: "qemu+ssh://root@" + addr + "/system?" + q.Encode(), pid: cmd.Process.Pid}
}
