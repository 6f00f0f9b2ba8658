package qemutest

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestSerialBanner checks the harness itself: a paused guest prints
// nothing until Cont, then SeaBIOS's banner arrives on the chardev.
func TestSerialBanner(t *testing.T) {
	q, addr := StartSerial(t, SerialOptions{Paused: true})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q.WaitChardevConnected("s0", 10*time.Second)
	q.Cont()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got bytes.Buffer
	buf := make([]byte, 4096)
	for !bytes.Contains(got.Bytes(), []byte("SeaBIOS")) {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil && err != io.EOF {
			t.Fatalf("read: %v; got %q", err, got.String())
		}
	}
}
