package consolestream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"github.com/digitalocean/go-libvirt/socket"

	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// FuzzDecode feeds libvirtd reply payloads to the XDR decoders: no
// panic, and no allocation sized by the wire beyond what the payload
// holds.
func FuzzDecode(f *testing.F) {
	var e xdrEncoder
	e.uint32(2)
	e.int32(1)
	e.int32(-1)
	f.Add(e.b)
	e = xdrEncoder{}
	e.uint32(uint32(libvirt.ErrOperationFailed))
	e.uint32(10)
	e.optString("operation failed: Active console session exists for this domain")
	f.Add(e.b)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ints, err := decodeInts(b)
		if err == nil && 4+4*len(ints) > len(b) {
			t.Fatalf("decodeInts: %d ints from %d bytes", len(ints), len(b))
		}
		var le libvirt.Error
		if !errors.As(decodeError(b), &le) {
			if len(b) >= 12 {
				t.Fatalf("decodeError(%d bytes) is not a libvirt.Error", len(b))
			}
			return
		}
		if len(le.Message) > len(b) && !strings.HasPrefix(le.Message, "libvirt error ") {
			t.Fatalf("decodeError: %d-byte message from %d bytes", len(le.Message), len(b))
		}
	})
}

// maxFuzzPackets stays below the conn's data queue (64), so Route never
// blocks in the fuzzer.
const maxFuzzPackets = 60

// FuzzRoute feeds a sequence of packets, as go-libvirt's socket hands
// them over, to conn.Route and then reads the console stream to its end:
// no panic, no hang, and the bytes read are exactly the stream's data
// packets before its first end (OK or error), in order.
//
// Each packet is a selector byte (type, status, and whether the serial
// is the stream's, a pending call's or another), a one-byte length and
// the payload.
func FuzzRoute(f *testing.F) {
	f.Add([]byte{0x00, 3, 'a', 'b', 'c', 0x00, 1, 'd', 0x04, 0})
	f.Add([]byte{0x00, 2, 'h', 'i', 0x08, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x11, 4, 0, 0, 0, 0, 0x00, 1, 'x'})
	f.Add([]byte{0x00, 0, 0x02, 1, 'y', 0x00, 1, 'z'})
	f.Fuzz(func(t *testing.T, in []byte) {
		const streamSerial, callSerial = 7, 3
		c := &conn{
			replies:      map[int32]chan rpcReply{callSerial: make(chan rpcReply, 1)},
			streamSerial: streamSerial,
			data:         make(chan streamMsg, 64),
			closed:       make(chan struct{}),
			rdl:          makeDeadline(),
		}
		reply := c.replies[callSerial]
		// An unconnected socket: Disconnected is closed, as after
		// libvirtd went away having sent everything routed.
		c.sock = socket.New(nil, c)

		var want bytes.Buffer
		var wantErr error // nil: the stream did not end
		var wantReply []byte
		replied := false
		for n := 0; len(in) >= 2 && n < maxFuzzPackets; n++ {
			sel, size := in[0], int(in[1])
			in = in[2:]
			size = min(size, len(in))
			payload := append([]byte(nil), in[:size]...)
			in = in[size:]

			h := &socket.Header{Program: remoteProgram, Procedure: procDomainOpenConsole}
			h.Type = [4]uint32{socket.Stream, socket.Reply, socket.Call, 9}[sel&3]
			h.Status = [4]uint32{socket.StatusContinue, socket.StatusOK, socket.StatusError, 9}[sel>>2&3]
			h.Serial = [4]int32{streamSerial, callSerial, 0, -1}[sel>>4&3]
			c.Route(h, payload)

			switch {
			case h.Type == socket.Stream && h.Serial == streamSerial:
				if wantErr != nil {
					break
				}
				switch h.Status {
				case socket.StatusContinue:
					want.Write(payload)
				case socket.StatusOK:
					wantErr = io.EOF
				default:
					wantErr = errors.New("console stream ended by libvirtd")
				}
			case h.Type == socket.Reply && h.Serial == callSerial && !replied:
				replied, wantReply = true, payload
			}
		}

		var got bytes.Buffer
		buf := make([]byte, 5) // small reads: leftovers are kept
		var err error
		for i := 0; ; i++ {
			if i > 1<<16 {
				t.Fatal("Read never ends")
			}
			var n int
			n, err = c.Read(buf)
			got.Write(buf[:n])
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("read %q, want %q", got.Bytes(), want.Bytes())
		}
		switch {
		case wantErr == nil:
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("stream without an end: Read error %v, want the connection lost", err)
			}
		case wantErr == io.EOF:
			if err != io.EOF {
				t.Fatalf("Read error %v, want io.EOF", err)
			}
		default:
			if err == nil || !strings.HasPrefix(err.Error(), wantErr.Error()) {
				t.Fatalf("Read error %v, want %q…", err, wantErr)
			}
		}
		select {
		case r := <-reply:
			if !replied || !bytes.Equal(r.payload, wantReply) {
				t.Fatalf("call got reply %q (replied %v), want %q", r.payload, replied, wantReply)
			}
		default:
			if replied {
				t.Fatal("the pending call's reply was lost")
			}
		}
		if _, ok := c.replies[callSerial]; ok == replied {
			t.Fatalf("pending call still registered: %v, answered: %v", ok, replied)
		}
	})
}

type pipeDialer struct{ c net.Conn }

func (d pipeDialer) Dial() (net.Conn, error) { return d.c, nil }

// packet encodes one remote-protocol packet as libvirtd sends it.
func packet(typ uint32, serial int32, status uint32, payload []byte) []byte {
	var e xdrEncoder
	e.uint32(uint32(transport.MinPacket + len(payload)))
	for _, v := range []uint32{remoteProgram, 1, procDomainOpenConsole, typ, uint32(serial), status} {
		e.uint32(v)
	}
	return append(e.b, payload...)
}

// FuzzSocket feeds a byte stream from libvirtd through go-libvirt's
// socket, behind transport.Framed, to the console stream: no panic (the
// socket alone panics on a packet shorter than its header), no
// allocation beyond a packet's bounded length, and the stream always
// ends once libvirtd's side closes. testdata/fuzz holds the inputs
// that crashed the process before transport.Framed.
func FuzzSocket(f *testing.F) {
	data := packet(socket.Stream, 7, socket.StatusContinue, []byte("login: "))
	f.Add(data)
	f.Add(append(append([]byte(nil), data...), packet(socket.Stream, 7, socket.StatusOK, nil)...))
	f.Add(append(packet(socket.Reply, 3, socket.StatusOK, []byte{0, 0, 0, 0}), packet(socket.Stream, 7, socket.StatusError, []byte{0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0})...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 64<<10 {
			return
		}
		a, b := net.Pipe()
		c := &conn{
			replies:      map[int32]chan rpcReply{},
			streamSerial: 7,
			data:         make(chan streamMsg, 64),
			closed:       make(chan struct{}),
			rdl:          makeDeadline(),
		}
		c.sock = socket.New(transport.Framed(pipeDialer{a}), c)
		if err := c.sock.Connect(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.Write(in) // fails once the framing check closed a
			b.Close()
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 512)
		for {
			_, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the stream did not end after libvirtd's side closed")
			}
			if err != nil {
				break
			}
		}
		<-c.sock.Disconnected()
		a.Close()
		wg.Wait()
	})
}
