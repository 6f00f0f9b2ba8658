package main

import (
	"bufio"
	"cmp"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// syscallMessages is how many messages each workload of BenchmarkSyscalls
// counts the syscalls of.
const syscallMessages = 1000

// BenchmarkSyscalls (make bench-syscalls) counts the proxy's syscalls per
// message, the evidence issue 16 asks for ("strace -c syscall counts per
// message"): with BenchmarkTable's setup (startTablePeers), plain and TLS,
// for the minimal gorilla proxy and virtconsole (and the baseline build,
// when given), it opens a session, warms it up, attaches strace -f -c to
// the proxy process, and passes 1,000 messages of one workload:
//
//	up    a 32 KiB websocket message from the client, to the sink
//	down  a 32 KiB write by the sink, to the client
//	echo  a 1-byte round trip through an echoing sink
//
// then detaches and prints the calls per message, by syscall. strace
// slows every syscall down, so reads may find more waiting than they
// would at full speed: the counts are a ceiling of the unslowed ones. In
// TLS mode virtconsole's "up" is n/a (BenchmarkTable says why). strace's
// summaries are saved in $VIRTCONSOLE_BENCH_PROFILE as
// strace-MODE-PEER-WORKLOAD.txt. It measures only.
func BenchmarkSyscalls(b *testing.B) {
	if _, err := exec.LookPath("strace"); err != nil {
		b.Fatal("strace not installed (Debian: apt-get install strace)")
	}
	out := os.Getenv(benchProfileEnv)
	if out == "" {
		out = b.TempDir()
	}
	dir := pki(b)
	var lines []string
	for _, mode := range benchModes() {
		peers := startTablePeers(b, dir, mode)
		lines = append(lines, "", mode+": calls per message (total, then by syscall)")
		for _, workload := range []string{"up", "down", "echo"} {
			for _, p := range selectPeers(peers.list, []string{"gorilla", "baseline", "virtconsole"}) {
				if p.pid == 0 || p.name == "websockify" { // a process per session
					continue
				}
				label := fmt.Sprintf("  %-5s %-12s", workload, p.name)
				if pasteLimited(mode, p.name, workload+"-MiB/s") {
					lines = append(lines, label+" n/a (paste-limited toward a TLS serial target)")
					continue
				}
				counts := countSyscalls(b, p, peers.sinks, workload, filepath.Join(out, fmt.Sprintf("strace-%s-%s-%s.txt", mode, p.name, workload)))
				lines = append(lines, label+" "+formatSyscalls(counts))
			}
		}
	}
	fmt.Printf("\nproxy syscalls per message (strace -f -c, %d messages after a warm-up; 32 KiB up and down, 1-byte echo round trips)\n", syscallMessages)
	fmt.Println(strings.Join(lines, "\n"))
	fmt.Printf("strace summaries in %s\n", out)
}

// countSyscalls runs one workload through p with strace attached to its
// process and returns the calls per message by syscall.
func countSyscalls(b *testing.B, p tablePeer, sinks chan net.Conn, workload, summary string) map[string]float64 {
	run, end := workloadSession(b, p, sinks, workload)
	defer end()
	stop := attachStrace(b, p.pid, summary)
	run(syscallMessages)
	return stop()
}

// workloadSession opens a session through p for workload (up, down or
// echo, see BenchmarkSyscalls) and warms it up; run passes n messages,
// end closes the session.
func workloadSession(b *testing.B, p tablePeer, sinks chan net.Conn, workload string) (run func(n int), end func()) {
	client, sink := connectTable(b, p, sinks)
	if workload == "echo" {
		stop := echoSink(sink)
		run = func(n int) { echoRounds(b, p.name, client, n) }
		end = func() { client.Close(); stop() }
	} else {
		up := workload == "up"
		run = func(n int) { streamBytes(b, p.name, client, sink, int64(n)*compareChunk, up) }
		end = func() { client.Close(); sink.Close() }
	}
	run(100)
	return run, end
}

// attachStrace attaches strace -f -c to pid (every thread) and returns
// once it is attached; stop detaches it and returns the calls per
// message (of syscallMessages) by syscall, from its summary, which it
// writes to the file summary.
func attachStrace(b *testing.B, pid int, summary string) (stop func() map[string]float64) {
	cmd := exec.Command("strace", "-f", "-c", "-o", summary, "-p", strconv.Itoa(pid))
	log := &syncBuffer{}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(b, 30*time.Second, "strace to attach", func() bool {
		select {
		case err := <-done:
			b.Fatalf("strace -p %d: %v: %s (it needs ptrace rights: root, or kernel.yama.ptrace_scope 0)", pid, err, log.String())
		default:
		}
		return strings.Contains(log.String(), "attached")
	})
	time.Sleep(200 * time.Millisecond) // the other threads' attach
	return func() map[string]float64 {
		cmd.Process.Signal(syscall.SIGINT)
		// strace detaches, writes its summary and dies of the signal.
		if err := <-done; err != nil && cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGINT {
			b.Fatalf("strace: %v: %s", err, log.String())
		}
		return parseStraceSummary(b, summary)
	}
}

// parseStraceSummary reads strace -c's table (% time, seconds,
// usecs/call, calls, [errors,] syscall) as calls per message.
func parseStraceSummary(b *testing.B, path string) map[string]float64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	counts := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || strings.HasPrefix(fields[0], "%") || strings.HasPrefix(fields[0], "-") {
			continue
		}
		calls, err := strconv.Atoi(fields[3])
		if err != nil {
			continue
		}
		counts[fields[len(fields)-1]] = float64(calls) / syscallMessages
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return counts
}

// formatSyscalls is "12.3 = read 8.1, write 2.0, ..." (the total, then
// the syscalls of at least 0.05 per message, most first).
func formatSyscalls(counts map[string]float64) string {
	var names []string
	for name, v := range counts {
		if name != "total" && v >= 0.05 {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(x, y string) int { return cmp.Or(cmp.Compare(counts[y], counts[x]), strings.Compare(x, y)) })
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %.2f", name, counts[name])
	}
	return fmt.Sprintf("%6.2f = %s", counts["total"], strings.Join(parts, ", "))
}
