package tunnel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// idleSessions is how many sessions BenchmarkIdleJoinMemory holds open.
const idleSessions = 2000

// idleBulk is what every bulk session carries each way before it idles.
const idleBulk = 64 << 10

// BenchmarkIdleJoinMemory measures what an idle session costs: it opens
// idleSessions sessions
//
//	client ⇄ [TCP or websocket] ⇄ Join ⇄ [TCP] ⇄ sink
//
// in this process, makes each carry idleBulk bytes both ways at once
// ("bulk"; "fresh": nothing), lets them go idle, and reports per session,
// after two GCs (so that sync.Pool holds nothing):
//
//   - heap-B/session: live heap of the whole session, both outer ends
//     included (a TCPConn is about 300 bytes; a client websocket about as
//     much as the server's);
//   - join-B/session: live heap Join and the traffic added to the open
//     conns: what an idle Join holds;
//   - stack-B/session: goroutine stacks (StackInuse), whether the copy
//     loops' stacks stay grown after bulk;
//   - rss-B/session: the process's RSS growth after debug.FreeOSMemory
//     (noisy; the heap and stack figures are the ones to compare).
//
// The runtime keeps the structs of ended goroutines for reuse (about
// 450 bytes each, two per session), so only the first sub-benchmark run
// in a process counts them: run one per process for comparable figures,
//
//	go test -c -o /tmp/tunnel.test ./tunnel/
//	for f in tcp/bulk tcp/fresh websocket/bulk websocket/fresh; do
//		/tmp/tunnel.test -test.run '^$' -test.bench "IdleJoinMemory/$f\$" -test.benchtime 1x
//	done
//
// Measured on the 2-core test machine (Go 1.26), before and after Join
// gave buffers back while it waits on a socket (join-B, stack-B):
//
//	tcp/bulk         6087 → 1685, 4129 → 4129
//	tcp/fresh        6081 → 1681, 4129 → 4129
//	websocket/bulk   6162 → 3720, 8300 → 8300
//	websocket/fresh  6097 → 3657, 6160 → 7100
//
// A TCP session's Join holds its joiner (about 540 bytes), its two
// socket readers and two goroutines (structs and 2 KiB stacks, which bulk
// data does not grow); a websocket source (those figures are from before
// wsconn's ReadLazy) also its small buffer, and its copy loop's stack
// grows to 4 KiB.
func BenchmarkIdleJoinMemory(b *testing.B) {
	for _, kind := range []string{"tcp", "websocket"} {
		for _, bulk := range []bool{true, false} {
			name := kind + "/fresh"
			if bulk {
				name = kind + "/bulk"
			}
			b.Run(name, func(b *testing.B) {
				for range b.N {
					measureIdleSessions(b, kind, bulk)
				}
			})
		}
	}
}

type idleMem struct {
	heap, stack uint64
	rss         int64
}

func readIdleMem(b *testing.B) idleMem {
	runtime.GC()
	runtime.GC() // the first GC moves sync.Pool's contents to its victim cache
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return idleMem{heap: ms.HeapAlloc, stack: ms.StackInuse, rss: rss(b)}
}

// rss is the process's resident set size in bytes.
func rss(b *testing.B) int64 {
	statm, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(statm))
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

func measureIdleSessions(b *testing.B, kind string, bulk bool) {
	b.StopTimer()
	var wsc *wsConnector
	if kind == "websocket" {
		wsc = newWSConnector(b)
	}
	before := readIdleMem(b)

	type session struct{ client, ja, jb, sink net.Conn }
	sessions := make([]session, idleSessions)
	for i := range sessions {
		s := &sessions[i]
		if wsc != nil {
			s.client, s.ja = wsc.connect(b)
		} else {
			s.client, s.ja = nettest.TCPPair(b)
		}
		s.jb, s.sink = nettest.TCPPair(b)
	}
	opened := readIdleMem(b)

	b.StartTimer()
	var joins sync.WaitGroup
	for _, s := range sessions {
		joins.Go(func() { tunnel.Join(context.Background(), s.ja, s.jb) })
	}
	if bulk {
		work := make(chan session)
		var workers sync.WaitGroup
		for range 2 * runtime.GOMAXPROCS(0) {
			workers.Go(func() {
				out, in := make([]byte, idleBulk), make([]byte, idleBulk)
				for s := range work {
					carry(b, s.client, s.sink, out, in)
				}
			})
		}
		for _, s := range sessions {
			work <- s
		}
		close(work)
		workers.Wait()
	}
	b.StopTimer()
	time.Sleep(100 * time.Millisecond) // every copy loop back in Read
	idle := readIdleMem(b)

	n := float64(idleSessions)
	b.ReportMetric(float64(idle.heap-before.heap)/n, "heap-B/session")
	b.ReportMetric((float64(idle.heap)-float64(opened.heap))/n, "join-B/session")
	b.ReportMetric((float64(idle.stack)-float64(before.stack))/n, "stack-B/session")
	b.ReportMetric(float64(idle.rss-before.rss)/n, "rss-B/session")

	for _, s := range sessions {
		s.client.Close()
		s.sink.Close()
	}
	joins.Wait()
}

// carry sends len(out) bytes from client to sink and from sink to client
// at the same time, and reads both.
func carry(b *testing.B, client, sink net.Conn, out, in []byte) {
	var w sync.WaitGroup
	for _, c := range []net.Conn{client, sink} {
		w.Go(func() {
			if _, err := c.Write(out); err != nil {
				b.Error(err)
			}
		})
	}
	for _, c := range []net.Conn{sink, client} {
		if _, err := io.ReadFull(c, in); err != nil {
			b.Fatal(err)
		}
	}
	w.Wait()
}

// wsConnector makes websocket pairs: the client's end from wsconn.Dial,
// the server's from wsconn.Upgrade on a plain HTTP server.
type wsConnector struct {
	url      string
	accepted chan net.Conn
}

func newWSConnector(b *testing.B) *wsConnector {
	w := &wsConnector{accepted: make(chan net.Conn, 1)}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ws, err := wsconn.Upgrade(rw, r, nil)
		if err != nil {
			b.Error(err)
			return
		}
		w.accepted <- ws // the handler returns; the hijacked conn lives on
	}))
	b.Cleanup(srv.Close)
	w.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return w
}

func (w *wsConnector) connect(b *testing.B) (client, server net.Conn) {
	client, err := wsconn.Dial(context.Background(), w.url, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	return client, <-w.accepted
}
