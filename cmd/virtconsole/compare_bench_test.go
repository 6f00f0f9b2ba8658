package main

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// compareChunk is one throughput write: a 32 KiB binary message (up) or
// a 32 KiB write by the sink (down), what a busy proxy writes at a time.
const compareChunk = 32 << 10

// startWebsockifyMode runs websockify from 127.0.0.1:PORT to target, in
// its own process group (it forks per connection) killed when the
// benchmark ends, in cleartext on both legs.
func startWebsockify(b *testing.B, target string) (addr string, pid int) {
	path, err := exec.LookPath("websockify")
	if err != nil {
		b.Skip("websockify not installed (Debian: apt-get install websockify); skipping the comparison")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	log := &syncBuffer{}
	cmd := exec.Command(path, addr, target)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its group: it and its per-connection children
		<-done
		if b.Failed() {
			b.Logf("websockify output:\n%s", log.String())
		}
	})
	waitFor(b, 30*time.Second, "websockify to listen", func() bool {
		select {
		case <-done:
			b.Fatalf("websockify exited: %s", log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return addr, cmd.Process.Pid
}

// treeCPU is the user+system CPU time of pid and its descendants,
// including the reaped children's (cutime, cstime), from /proc.
func treeCPU(b *testing.B, root int) time.Duration {
	const clkTck = 100 // USER_HZ on Linux
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	type proc struct{ ppid, ticks int }
	procs := map[int]proc{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after "(comm)": state ppid ... utime(14) stime cutime cstime.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 15 {
			continue
		}
		p := proc{}
		p.ppid, _ = strconv.Atoi(f[1])
		for _, s := range f[11:15] {
			v, _ := strconv.Atoi(s)
			p.ticks += v
		}
		procs[pid] = p
	}
	if _, ok := procs[root]; !ok {
		b.Fatal("proxy process gone")
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	ticks := 0
	for todo := []int{root}; len(todo) > 0; {
		pid := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		ticks += procs[pid].ticks
		todo = append(todo, children[pid]...)
	}
	return time.Duration(ticks) * time.Second / clkTck
}
