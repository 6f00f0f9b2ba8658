package qemutest

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GraphicsGuest is the tiny Linux guest (LinuxGuest) prepared for a
// machine with a display: pass Args to StartVNC or StartSPICE
// (VNCOptions.Args, SPICEOptions.Args), then call Boot. The guest boots
// with GuestVTCmdline, so it has a root shell on tty1 (the VGA console,
// typed into through the PS/2 keyboard, i.e. by a VNC or SPICE viewer)
// and one on ttyS0, whose output a test reads on a TCP chardev: a test
// types "echo ... > /dev/ttyS0" on the keyboard and reads the result on
// the serial port.
type GraphicsGuest struct {
	// Args are QEMU arguments: 128 MiB, -kernel, -initrd and -append
	// GuestVTCmdline, the first serial port on a TCP chardev (id "s0")
	// listening on Serial, a virtio mouse and tablet (the guest prints
	// GuestPointer at their first event), and -S: the guest starts paused,
	// so that Boot connects before it prints anything.
	Args []string
	// Serial is the chardev's address on 127.0.0.1.
	Serial string
}

// NewGraphicsGuest builds (or finds cached) the guest's kernel and
// initramfs and picks the chardev's port. Missing packages skip t, or
// fail it when CI is set.
func NewGraphicsGuest(t testing.TB) *GraphicsGuest {
	t.Helper()
	Require(t)
	kernel, initrd := LinuxGuest(t)
	port := FreePort(t)
	return &GraphicsGuest{
		Args: []string{"-m", "128", "-S",
			"-kernel", kernel, "-initrd", initrd, "-append", GuestVTCmdline,
			"-chardev", fmt.Sprintf("socket,id=s0,host=127.0.0.1,port=%d,server=on,wait=off", port),
			"-serial", "chardev:s0",
			"-device", "virtio-mouse-pci", "-device", "virtio-tablet-pci"},
		Serial: "127.0.0.1:" + strconv.Itoa(port),
	}
}

// Boot connects to the guest's serial chardev on q (started with g.Args),
// waits until QEMU has the connection, resumes the guest and returns
// the connection, whose output (from the guest's first byte) it collects.
func (g *GraphicsGuest) Boot(t testing.TB, q *QEMU) *SerialConsole {
	t.Helper()
	c, err := net.DialTimeout("tcp", g.Serial, 10*time.Second)
	if err != nil {
		t.Fatalf("the guest's serial chardev: %v", err)
	}
	s := &SerialConsole{Conn: c, done: make(chan struct{})}
	go func() { io.Copy(&s.out, c); close(s.done) }()
	t.Cleanup(func() { c.Close(); <-s.done })
	q.WaitChardevConnected("s0", 10*time.Second)
	q.Cont()
	return s
}

// SerialConsole is a connection to a guest's serial port and what the
// guest printed on it so far.
type SerialConsole struct {
	Conn net.Conn
	out  Buffer
	done chan struct{}
}

// Output returns what the guest printed so far.
func (s *SerialConsole) Output() string { return s.out.String() }

// Contains reports whether the guest has printed want.
func (s *SerialConsole) Contains(want string) bool { return strings.Contains(s.out.String(), want) }

// Wait polls until the guest has printed want; it fails t after timeout
// or when the connection ends first.
func (s *SerialConsole) Wait(t testing.TB, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !s.Contains(want) {
		select {
		case <-s.done:
			if s.Contains(want) {
				return
			}
			t.Fatalf("the serial connection ended before %q; got %q", want, s.Output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q on the serial port within %v; got %q", want, timeout, s.Output())
		}
	}
}
