package termio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

func TestParseEscape(t *testing.T) {
	for in, want := range map[string]int{"^]": 0x1d, "^a": 1, "^A": 1, "^@": 0, "^_": 0x1f, "none": -1} {
		got, err := ParseEscape(in)
		if err != nil || got != want {
			t.Errorf("ParseEscape(%q) = %d, %v; want %d", in, got, err, want)
		}
		if got >= 0 && FormatEscape(got) != strings.ToUpper(in) {
			t.Errorf("FormatEscape(%d) = %q", got, FormatEscape(got))
		}
	}
	for _, bad := range []string{"", "]", "^", "^1", "ctrl-]", "^]]"} {
		if _, err := ParseEscape(bad); err == nil {
			t.Errorf("ParseEscape(%q) accepted", bad)
		}
	}
}

// The escape byte ends the session wherever it is in a read, and the
// bytes before it are still sent.
func TestEscapeMidRead(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	s := &Session{In: strings.NewReader("abc\x1ddef"), Out: io.Discard, Escape: 0x1d}
	err := s.Run(context.Background(), local)
	if !errors.Is(err, ErrEscaped) {
		t.Fatalf("Run = %v, want ErrEscaped", err)
	}
	got, _ := io.ReadAll(remote)
	if string(got) != "abc" {
		t.Fatalf("remote got %q, want %q", got, "abc")
	}
}

// Pipe mode: when In ends, the console is not told (QEMU's chardev takes
// a half-close as a disconnect), and its answer, coming later, is still
// copied; Run returns once the console has been quiet for Drain.
func TestInputEndDrainsOutput(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	var out bytes.Buffer
	s := &Session{In: strings.NewReader("hello\n"), Out: &out, Escape: -1, Drain: 300 * time.Millisecond}
	sawEOF := make(chan bool, 1)
	go func() {
		buf := make([]byte, 6)
		io.ReadFull(remote, buf)
		// Like QEMU: EOF from the client is a disconnect, no answer.
		remote.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
		if _, err := remote.Read(make([]byte, 1)); err == io.EOF {
			sawEOF <- true
			remote.Close()
			return
		}
		sawEOF <- false
		// Answer in two parts, each within the drain period.
		remote.Write([]byte("reply:"))
		time.Sleep(200 * time.Millisecond)
		remote.Write(buf)
	}()
	if err := s.Run(context.Background(), local); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if <-sawEOF {
		t.Fatal("the console read EOF after In ended")
	}
	if out.String() != "reply:hello\n" {
		t.Fatalf("out = %q", out.String())
	}
}

// A console that never closes after In ended is drained for Drain only.
func TestDrainBounded(t *testing.T) {
	local, _ := nettest.TCPPair(t)
	s := &Session{In: strings.NewReader(""), Out: io.Discard, Escape: -1, Drain: 50 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), local) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain period")
	}
}

// The console closing ends the session even while In is still open.
func TestRemoteClose(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	var out bytes.Buffer
	s := &Session{In: pr, Out: &out, Escape: 0x1d}
	remote.Write([]byte("bye"))
	remote.Close()
	if err := s.Run(context.Background(), local); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if out.String() != "bye" {
		t.Fatalf("out = %q", out.String())
	}
}

func TestContextCancel(t *testing.T) {
	local, _ := nettest.TCPPair(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Session{In: pr, Out: io.Discard, Escape: 0x1d}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, local) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run ignored cancellation")
	}
}

// A session's input outlives its connection: Run on a second connection
// (a reconnect) sends what was typed after the first one dropped, and
// Wait without discard leaves it there.
func TestSessionInputOutlivesConnection(t *testing.T) {
	pr, pw := io.Pipe()
	s := &Session{In: pr, Out: io.Discard, Escape: -1}
	local, remote := nettest.TCPPair(t)
	go func() {
		io.WriteString(pw, "one")
		io.ReadFull(remote, make([]byte, 3))
		remote.Close()
	}()
	if err := s.Run(context.Background(), local); err != nil {
		t.Fatalf("first Run = %v, want nil (the console closed)", err)
	}
	go io.WriteString(pw, "two")
	if err := s.Wait(context.Background(), 100*time.Millisecond, false); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	local2, remote2 := nettest.TCPPair(t)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background(), local2) }()
	got := make([]byte, 3)
	remote2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(remote2, got); err != nil || string(got) != "two" {
		t.Fatalf("second connection got %q, %v; want %q", got, err, "two")
	}
	pw.Close()
	remote2.Close()
	if err := <-done; err != nil || !s.InputEnded() {
		t.Fatalf("second Run = %v, input ended %v", err, s.InputEnded())
	}
}

// On a terminal, Wait drops what is typed but ends on the escape key.
func TestWaitEscape(t *testing.T) {
	pr, pw := io.Pipe()
	s := &Session{In: pr, Out: io.Discard, Escape: 0x1d}
	go io.WriteString(pw, "typed while waiting\r")
	go func() { time.Sleep(100 * time.Millisecond); io.WriteString(pw, "\x1d\r") }()
	start := time.Now()
	if err := s.Wait(context.Background(), 10*time.Second, true); !errors.Is(err, ErrEscaped) {
		t.Fatalf("Wait = %v, want ErrEscaped", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Wait took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx, 10*time.Second, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel = %v", err)
	}
}
