package qemutest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestInitramfsLayout checks the cpio archive without booting it.
func TestInitramfsLayout(t *testing.T) {
	bb := Need(t, "busybox")[0]
	img, err := BuildInitramfs(bb)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // name -> mode
	for off := 0; ; {
		if off+110 > len(raw) || string(raw[off:off+6]) != "070701" {
			t.Fatalf("bad cpio header at %d", off)
		}
		var f [13]uint32
		for i := range f {
			fmt.Sscanf(string(raw[off+6+8*i:off+14+8*i]), "%08X", &f[i])
		}
		nameLen, size := int(f[11]), int(f[6])
		name := string(raw[off+110 : off+110+nameLen-1])
		off = align4(off + 110 + nameLen)
		off = align4(off + size)
		if name == "TRAILER!!!" {
			break
		}
		names[name] = fmt.Sprintf("%o", f[1])
	}
	for name, mode := range map[string]string{"init": "100755", "bin/busybox": "100755", "bin/sh": "120777", "dev/console": "20600", "bin": "40755"} {
		if names[name] != mode {
			t.Errorf("%s: mode %q, want %q", name, names[name], mode)
		}
	}
	if len(names) < 100 {
		t.Errorf("only %d entries; want a link per applet", len(names))
	}
}

func align4(n int) int { return (n + 3) &^ 3 }

// TestLinuxGuest boots the tiny guest in plain QEMU with its serial port
// on a TCP chardev and runs a command in its shell.
func TestLinuxGuest(t *testing.T) {
	Require(t)
	kernel, initrd := LinuxGuest(t)
	port := FreePort(t)
	q := Start(t, "-m", "128", "-machine", "pc,graphics=off", "-S",
		"-kernel", kernel, "-initrd", initrd, "-append", GuestCmdline,
		"-chardev", fmt.Sprintf("socket,id=s0,host=127.0.0.1,port=%d,server=on,wait=off", port),
		"-serial", "chardev:s0")
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q.WaitChardevConnected("s0", 10*time.Second)
	start := time.Now()
	q.Cont()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(c)
	var seen strings.Builder
	readUntil := func(want string) {
		t.Helper()
		for !strings.Contains(seen.String(), want) {
			b, err := r.ReadByte()
			if err != nil {
				t.Fatalf("waiting for %q: %v; got %q", want, err, seen.String())
			}
			seen.WriteByte(b)
		}
	}
	readUntil(GuestReady)
	t.Logf("guest ready after %v", time.Since(start).Round(time.Millisecond))
	readUntil("# ")
	seen.Reset()
	if _, err := c.Write([]byte("echo $((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	readUntil("42")
}

// TestLinuxGuestVT boots the tiny guest as GraphicsGuest does, in a VGA
// machine, and types into its tty1 shell with QMP send-key (the PS/2
// keyboard, as a VNC or SPICE viewer's keys arrive): the command's output
// comes back on the serial port.
func TestLinuxGuestVT(t *testing.T) {
	g := NewGraphicsGuest(t)
	q, _ := StartVNC(t, VNCOptions{Args: g.Args})
	start := time.Now()
	s := g.Boot(t, q)
	s.Wait(t, GuestReady, 60*time.Second)
	t.Logf("guest ready after %v", time.Since(start).Round(time.Millisecond))
	// qcodes (QMP QKeyCode) of the US layout: shifted characters hold
	// "shift".
	keys := map[rune]string{' ': "spc", '-': "minus", '/': "slash", '.': "dot", '\n': "ret"}
	shifted := map[rune]string{'$': "4", '(': "9", ')': "0", '*': "8", '>': "dot"}
	typeLine := func(line string) {
		for _, r := range line {
			var k []map[string]string
			switch {
			case shifted[r] != "":
				k = []map[string]string{{"type": "qcode", "data": "shift"}, {"type": "qcode", "data": shifted[r]}}
			case r >= 'A' && r <= 'Z':
				k = []map[string]string{{"type": "qcode", "data": "shift"}, {"type": "qcode", "data": strings.ToLower(string(r))}}
			case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				k = []map[string]string{{"type": "qcode", "data": string(r)}}
			case keys[r] != "":
				k = []map[string]string{{"type": "qcode", "data": keys[r]}}
			default:
				t.Fatalf("no qcode for %q", r)
			}
			if _, err := q.QMP("send-key", map[string]any{"keys": k, "hold-time": 10}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The tty1 shell may not be reading yet: type until it answers.
	deadline := time.Now().Add(60 * time.Second)
	for !s.Contains("vt-42") {
		if time.Now().After(deadline) {
			t.Fatalf("no answer from the tty1 shell; serial output: %q", s.Output())
		}
		typeLine("\necho vt-$((6*7)) > /dev/ttyS0\n")
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end) && !s.Contains("vt-42"); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("typed line answered after %v", time.Since(start).Round(time.Millisecond))
}

// TestLinuxGuestPointer: QMP input-send-event moves QEMU's pointer (what
// a VNC or SPICE viewer's mouse does) and the guest, through its virtio
// mouse or tablet, prints GuestPointer on the serial port; nothing
// before.
func TestLinuxGuestPointer(t *testing.T) {
	g := NewGraphicsGuest(t)
	q, _ := StartVNC(t, VNCOptions{Args: g.Args})
	s := g.Boot(t, q)
	s.Wait(t, GuestReady, 60*time.Second)
	if s.Contains(GuestPointer) {
		t.Fatalf("%q before any pointer event: %q", GuestPointer, s.Output())
	}
	start := time.Now()
	for !s.Contains(GuestPointer) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no %q after 30 s of pointer events; serial output: %q", GuestPointer, s.Output())
		}
		events := []map[string]any{
			{"type": "rel", "data": map[string]any{"axis": "x", "value": 5}},
			{"type": "abs", "data": map[string]any{"axis": "x", "value": 1000 + int(time.Since(start)/time.Millisecond)%1000}},
		}
		if _, err := q.QMP("input-send-event", map[string]any{"events": events}); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end) && !s.Contains(GuestPointer); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("pointer event reached the guest %v after the first was sent", time.Since(start).Round(time.Millisecond))
}
