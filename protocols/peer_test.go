package protocols

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"
)

func pipePeer(ctx context.Context) (*Peer, net.Conn) {
	a, b := net.Pipe()
	return &Peer{Ctx: ctx, Conn: a, Name: "QEMU", Proto: "vnc", Stage: "handshake", Order: binary.BigEndian}, b
}

// Read errors say which of deadline, cancellation or close ended them.
func TestPeerErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	p, other := pipePeer(ctx)
	defer other.Close()
	clear := Deadline(ctx, p.Conn)
	_, err := p.ReadU32("its version")
	clear()
	if err == nil || !strings.Contains(err.Error(), "vnc: QEMU did not finish the handshake in time (stuck reading its version)") {
		t.Fatalf("deadline: %v", err)
	}

	ctx2, cancel2 := context.WithCancel(context.Background())
	p, other = pipePeer(ctx2)
	defer other.Close()
	clear = Deadline(ctx2, p.Conn)
	time.AfterFunc(20*time.Millisecond, cancel2)
	_, err = p.ReadU8("a byte")
	clear()
	if err == nil || !strings.Contains(err.Error(), "handshake with QEMU stopped while reading a byte") {
		t.Fatalf("cancel: %v", err)
	}

	p, other = pipePeer(context.Background())
	other.Close()
	if err := p.Read(make([]byte, 2), "two bytes"); err == nil || !strings.Contains(err.Error(), "closed the connection while reading two bytes") {
		t.Fatalf("close: %v", err)
	}
}

// ReadU32 uses the peer's byte order.
func TestPeerByteOrder(t *testing.T) {
	p, other := pipePeer(context.Background())
	p.Order = binary.LittleEndian
	go other.Write([]byte{1, 0, 0, 0})
	if v, err := p.ReadU32("n"); err != nil || v != 1 {
		t.Fatalf("ReadU32 = %d, %v", v, err)
	}
}
