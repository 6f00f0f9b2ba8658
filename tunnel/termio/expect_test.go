package termio

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

// A fake console on a loopback TCP pair: it prints a prompt, and answers
// each line it reads with "got:LINE\n" and a new prompt.
func fakeShell(t *testing.T, remote io.ReadWriteCloser) {
	t.Helper()
	go func() {
		defer remote.Close()
		io.WriteString(remote, "login: ")
		br := bufio.NewReader(remote)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(remote, "got:"+line+"# ")
		}
	}()
}

func steps(t *testing.T, pairs ...string) []Step {
	t.Helper()
	var s []Step
	for i := 0; i < len(pairs); i += 2 {
		var st Step
		if pairs[i] != "" {
			st.Expect = regexp.MustCompile(pairs[i])
		}
		if pairs[i+1] != "" {
			b, err := ParseSend(pairs[i+1])
			if err != nil {
				t.Fatal(err)
			}
			st.Send = b
		}
		s = append(s, st)
	}
	return s
}

// Steps run in order: each send goes after its expect matched, and an
// expect matches only output after the previous match ("got:a" is in
// the output before "got:b", but the third expect wants what came after).
func TestScriptOrder(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	fakeShell(t, remote)
	var out bytes.Buffer
	s := &Script{
		Steps:   steps(t, "login: $", `a\n`, `got:a\n# `, `b\n`, `got:(a|b)\n# `, ""),
		Out:     &out,
		Timeout: 5 * time.Second,
	}
	if err := s.Run(context.Background(), local); err != nil {
		t.Fatalf("Run = %v; output %q", err, out.String())
	}
	if out.String() != "login: got:a\n# got:b\n# " {
		t.Fatalf("output %q", out.String())
	}
}

// A leading send goes at once; a trailing send is followed by a drain
// that copies the answer.
func TestScriptLeadingAndTrailingSend(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	fakeShell(t, remote)
	var out bytes.Buffer
	s := &Script{Steps: steps(t, "", `x\n`, `got:x`, `y\n`), Out: &out, Timeout: 5 * time.Second, Drain: 300 * time.Millisecond}
	if err := s.Run(context.Background(), local); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !strings.HasSuffix(out.String(), "got:y\n# ") {
		t.Fatalf("the answer to the last send was not drained: %q", out.String())
	}
}

// An expect that never matches times out after Timeout (not much later),
// naming the pattern and showing the last lines, printable.
func TestScriptTimeout(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	go func() {
		for i := range 20 {
			io.WriteString(remote, "line "+string(rune('a'+i))+"\r\n")
		}
		io.WriteString(remote, "\x1b[1mbold\x1b[0m bell\x07")
	}()
	s := &Script{Steps: steps(t, "never", "", "also-never", ""), Out: io.Discard, Timeout: 500 * time.Millisecond}
	start := time.Now()
	err := s.Run(context.Background(), local)
	elapsed := time.Since(start)
	te, ok := errors.AsType[*TimeoutError](err)
	if !ok {
		t.Fatalf("Run = %v, want a *TimeoutError", err)
	}
	if elapsed < 500*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("timed out after %v, want about 500ms", elapsed)
	}
	if te.Pattern != "never" || te.N != 1 || te.Of != 2 {
		t.Fatalf("TimeoutError %+v", te)
	}
	want := "line l\nline m\nline n\nline o\nline p\nline q\nline r\nline s\nline t\nbold bell\\a"
	if te.Tail != want {
		t.Fatalf("tail %q, want %q", te.Tail, want)
	}
	if !strings.Contains(err.Error(), `--expect "never" (1 of 2)`) {
		t.Fatalf("message %q", err.Error())
	}
}

// The window is bounded: megabytes of output without a match keep at
// most Window bytes, and a match split across reads is still found.
func TestScriptWindowBound(t *testing.T) {
	local, remote := nettest.TCPPair(t)
	const window = 1024
	go func() {
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024)
		for range 256 { // 4 MiB
			remote.Write(chunk)
		}
		remote.Write([]byte("MAR"))
		time.Sleep(50 * time.Millisecond)
		remote.Write([]byte("KER tail"))
	}()
	s := &Script{Steps: steps(t, "MARKER", ""), Out: io.Discard, Timeout: 20 * time.Second, Window: window}
	maxLen := 0
	s.Out = writerFunc(func(p []byte) (int, error) {
		maxLen = max(maxLen, len(s.window))
		return len(p), nil
	})
	if err := s.Run(context.Background(), local); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if maxLen > window || cap(s.window) > window {
		t.Fatalf("window grew to %d bytes (capacity %d), bound %d", maxLen, cap(s.window), window)
	}
	if string(s.window) != " tail" && string(s.window) != "" {
		t.Fatalf("after the match the window holds %q, want what followed it", s.window)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// keepLast never allocates once the buffer has its capacity.
func TestKeepLastAllocs(t *testing.T) {
	b := make([]byte, 0, 64)
	p := []byte("0123456789")
	if n := testing.AllocsPerRun(1000, func() { b = keepLast(b, p, 64) }); n != 0 {
		t.Fatalf("keepLast allocates %v times per call", n)
	}
	if len(b) != 64 || string(b[len(b)-10:]) != "0123456789" {
		t.Fatalf("b = %q", b)
	}
}

// A script survives a reconnect: it continues at the step it was at.
func TestScriptContinuesOnNewConnection(t *testing.T) {
	s := &Script{Steps: steps(t, "one", `1\n`, "two", ""), Out: io.Discard, Timeout: 5 * time.Second}
	local, remote := nettest.TCPPair(t)
	go func() {
		io.WriteString(remote, "one")
		io.ReadFull(remote, make([]byte, 2))
		remote.Close() // dropped before "two"
	}()
	if err := s.Run(context.Background(), local); !errors.Is(err, ErrConsoleClosed) {
		t.Fatalf("first connection: Run = %v, want ErrConsoleClosed", err)
	}
	local2, remote2 := nettest.TCPPair(t)
	go io.WriteString(remote2, "two")
	if err := s.Run(context.Background(), local2); err != nil || !s.Done() {
		t.Fatalf("second connection: Run = %v, done %v", err, s.Done())
	}
}

func TestParseSend(t *testing.T) {
	for in, want := range map[string]string{
		`echo $((6*7))\n`: "echo $((6*7))\n",
		`a\r\tb\\c`:       "a\r\tb\\c",
		`\x03\e[A\0`:      "\x03\x1b[A\x00",
		`plain`:           "plain",
	} {
		got, err := ParseSend(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseSend(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`a\`, `\q`, `\x4`, `\xZZ`} {
		if _, err := ParseSend(bad); err == nil {
			t.Errorf("ParseSend(%q) accepted", bad)
		}
	}
}

func TestPrintable(t *testing.T) {
	got := Printable([]byte("a\r\n\x1b[31mred\x1b[0m\x1bc\tok\x00\xff é"))
	if want := "a\nred\tok\\x00\\xff é"; got != want {
		t.Fatalf("Printable = %q, want %q", got, want)
	}
}
