//go:build linux

package tunnel

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/tunnel/park"
)

// parkIdle is the tests' idle time before a direction parks.
const parkIdle = 50 * time.Millisecond

// parkedHook reports each parked direction on the channel it returns,
// for the test's duration.
func parkedHook(t *testing.T) <-chan int {
	ch := make(chan int, 16)
	testHookParked = func(i int) { ch <- i }
	t.Cleanup(func() { testHookParked = nil })
	return ch
}

// startParkingJoin starts a Join of two TCP pairs that parks in a
// poller of its own, which the test's cleanup closes.
func startParkingJoin(t *testing.T, ctx context.Context, opts ...JoinOption) (*joined, *park.Poller) {
	t.Helper()
	p, err := park.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return startJoin(t, ctx, append(opts, WithParking(p, parkIdle))...), p
}

// joinRuns counts the goroutines running a Join direction's loop.
func joinRuns() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "tunnel.(*joiner).run(")
}

// waitJoinRuns waits until want goroutines run a Join direction's loop.
func waitJoinRuns(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for n := joinRuns(); n != want; n = joinRuns() {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines run a Join direction, want %d", n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func echoOnce(t *testing.T, j *joined, msg string) {
	t.Helper()
	j.A.Write([]byte(msg))
	if got := recv(t, readN(j.B, len(msg)), "data at B"); string(got) != msg {
		t.Fatalf("B read %q, want %q", got, msg)
	}
	j.B.Write([]byte(msg))
	if got := recv(t, readN(j.A, len(msg)), "data at A"); string(got) != msg {
		t.Fatalf("A read %q, want %q", got, msg)
	}
}

// An idle direction parks, its goroutine ends, and input wakes it: bytes
// flow as before, both ways, over several park and wake-up cycles, and
// a half-close while parked passes on.
func TestJoinParksIdleDirection(t *testing.T) {
	parked := parkedHook(t)
	j, _ := startParkingJoin(t, context.Background())
	for i := range 3 {
		echoOnce(t, j, strings.Repeat("x", 1+i*40000)) // a bulk message too
		if d := recv(t, parked, "a parked direction"); d != 0 {
			t.Fatalf("direction %d parked, want 0 (a to b, on the goroutine)", d)
		}
		waitJoinRuns(t, 0) // the parked direction's goroutine ends
	}
	j.A.CloseWrite() // wakes the parked direction with its EOF
	recv(t, readAllChan(j.B), "EOF at B")
	j.B.Write([]byte("after"))
	j.B.CloseWrite()
	if got := recv(t, readAllChan(j.A), "A's rest"); string(got) != "after" {
		t.Fatalf("A read %q", got)
	}
	r := j.wait(t)
	if r.err != nil {
		t.Fatalf("Join: %v", r.err)
	}
	if want := int64(1 + 40001 + 80001); r.stats.AToB != want || r.stats.BToA != want+5 {
		t.Fatalf("stats %+v, want %d and %d", r.stats, want, want+5)
	}
}

// A parked direction ends with the session: cancelling, a reset from its
// peer, and the other direction's end after the linger time.
func TestJoinParkedEnds(t *testing.T) {
	t.Run("cancel", func(t *testing.T) {
		parked := parkedHook(t)
		ctx, cancel := context.WithCancel(context.Background())
		j, _ := startParkingJoin(t, ctx)
		echoOnce(t, j, "hi")
		recv(t, parked, "a parked direction")
		cancel()
		if r := j.wait(t); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Join: %v, want context.Canceled", r.err)
		}
		recv(t, readAllChan(j.A), "EOF at A")
		recv(t, readAllChan(j.B), "EOF at B")
	})
	t.Run("reset", func(t *testing.T) {
		parked := parkedHook(t)
		j, _ := startParkingJoin(t, context.Background())
		echoOnce(t, j, "hi")
		recv(t, parked, "a parked direction")
		j.A.SetLinger(0)
		j.A.Close()
		if r := j.wait(t); !errors.Is(r.err, syscall.ECONNRESET) {
			t.Fatalf("Join: %v, want a connection reset", r.err)
		}
		recv(t, readAllChan(j.B), "EOF at B")
	})
	t.Run("linger", func(t *testing.T) {
		parked := parkedHook(t)
		j, _ := startParkingJoin(t, context.Background(), WithLinger(100*time.Millisecond))
		echoOnce(t, j, "hi")
		recv(t, parked, "a parked direction")
		j.B.CloseWrite() // the other direction ends; a's, parked, is bounded
		recv(t, readAllChan(j.A), "EOF at A")
		if r := j.wait(t); r.err != nil {
			t.Fatalf("Join: %v", r.err)
		}
	})
}

// Closing the poller wakes a parked direction, which goes on waiting on
// its goroutine: bytes still flow, and it does not park again.
func TestJoinParkedPollerCloses(t *testing.T) {
	parked := parkedHook(t)
	j, p := startParkingJoin(t, context.Background())
	echoOnce(t, j, "hi")
	recv(t, parked, "a parked direction")
	p.Close()
	time.Sleep(3 * parkIdle) // idle past the parking time
	echoOnce(t, j, "still")
	select {
	case d := <-parked:
		t.Fatalf("direction %d parked in a closed poller", d)
	case <-time.After(3 * parkIdle):
	}
	waitJoinRuns(t, 1)
	j.A.Close()
	j.B.Close()
	j.wait(t)
}

// Many Joins park and wake at once in one poller, each with its own
// bytes: wake-ups go to the right session.
func TestJoinParkingManySessions(t *testing.T) {
	parked := make(chan int, 256)
	testHookParked = func(i int) { parked <- i }
	t.Cleanup(func() { testHookParked = nil })
	p, err := park.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	const n = 20
	joins := make([]*joined, n)
	for i := range joins {
		joins[i] = startJoin(t, context.Background(), WithParking(p, parkIdle))
	}
	for round := range 3 {
		for range n {
			recv(t, parked, "parked directions")
		}
		var wg sync.WaitGroup
		for i, j := range joins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				msg := strings.Repeat(string(rune('a'+i)), 10+round)
				j.A.Write([]byte(msg))
				if got := <-readN(j.B, len(msg)); string(got) != msg {
					t.Errorf("session %d: B read %q, want %q", i, got, msg)
				}
			}()
		}
		wg.Wait()
	}
	for _, j := range joins {
		j.A.Close()
		j.B.Close()
		j.wait(t)
	}
}
