package wsconn

// Conformance of the websocket behind Conn, in the manner of the Autobahn
// TestSuite (https://github.com/crossbario/autobahn-testsuite; the case
// numbers below are its sections): a raw-frame peer written here sends
// frames with any FIN, RSV, opcode, mask and length encoding, split across
// TCP writes down to a byte at a time, and parses what comes back.
//
// Server side: every case runs against two echo servers, a reference built
// directly on gorilla/websocket and Upgrade with an echo loop, and both
// must show the same outcome: the bytes echoed, the pongs, the close code
// sent, the peer's close code seen, and an end within testTimeout.
// Client side: Dial against a raw-frame server.
//
// Conn is a byte stream (package doc), which makes two differences by
// design, asserted as Conn's behaviour where they show:
//   - Conn echoes the data of a fragmented message as it arrives, so when a
//     protocol error cuts a message short, the fragments before it come
//     back; the reference, reading whole messages, echoes none of it.
//   - Conn answers pings from another goroutine and, as RFC 6455 5.5.3
//     allows, only the latest of pings not answered yet: its pongs are a
//     subsequence of the pings, ending with the last one; the reference
//     answers every ping.
//
// Where gorilla deviates from RFC 6455, a case says so (refClose): the
// reference is held to gorilla's outcome, and Conn to the RFC's.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// Frame header bits (RFC 6455, section 5.2).
const (
	bitFIN  = 0x80
	bitRSV1 = 0x40
	bitRSV2 = 0x20
	bitRSV3 = 0x10
	bitMask = 0x80
)

// closeNoFrame stands for "the transport ended without a close frame"
// (RFC 6455 7.1.5: the close code is then considered 1006).
const closeNoFrame = 1006

// frame is a frame as the raw peer writes it; the zero value of each field
// is the valid choice.
type frame struct {
	op      opcode
	more    bool // FIN clear: more fragments follow
	rsv     byte // RSV bits to set (bitRSV1...)
	payload []byte
	// lenBits forces a length encoding: 7, 16 or 64 bits (0: the minimal
	// one). RFC 6455 5.2 asks senders for the minimal one; a receiver
	// here (gorilla, Conn) accepts a longer one on a data frame (Autobahn
	// does not test it), not on a control frame, whose 7-bit field must
	// hold its length (5.5).
	lenBits  int
	unmasked bool    // a client frame without a mask (invalid)
	key      [4]byte // masking key (RFC 6455 5.3)
	// rawLen, when set, is written as the 64-bit length instead of
	// len(payload) (the payload still follows).
	rawLen uint64
}

// encode appends f's wire form to b, masked (a client's frame) if masked.
func (f frame) encode(b []byte, masked bool) []byte {
	b0 := byte(f.op) | f.rsv
	if !f.more {
		b0 |= bitFIN
	}
	var mb byte
	if masked {
		mb = bitMask
	}
	n := uint64(len(f.payload))
	bits := f.lenBits
	if f.rawLen != 0 {
		bits, n = 64, f.rawLen
	}
	if bits == 0 {
		switch {
		case n <= 125:
			bits = 7
		case n <= 0xffff:
			bits = 16
		default:
			bits = 64
		}
	}
	switch bits {
	case 7:
		b = append(b, b0, mb|byte(n))
	case 16:
		b = append(b, b0, mb|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, b0, mb|127)
		b = binary.BigEndian.AppendUint64(b, n)
	}
	if !masked {
		return append(b, f.payload...)
	}
	b = append(b, f.key[:]...)
	start := len(b)
	b = append(b, f.payload...)
	mask(f.key, b[start:])
	return b
}

// mask XORs p with key (RFC 6455 5.3), eight bytes at a time: a 16 MiB
// frame a byte at a time is slow under the race detector.
func mask(key [4]byte, p []byte) {
	k := uint64(binary.LittleEndian.Uint32(key[:]))
	k |= k << 32
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// rawFrame is a frame as the raw peer read it, unmasked.
type rawFrame struct {
	fin    bool
	rsv    byte
	op     opcode
	masked bool
	key    [4]byte
	data   []byte
}

// readFrame reads one frame from r and unmasks its payload.
func readFrame(r io.Reader) (rawFrame, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{fin: h[0]&bitFIN != 0, rsv: h[0] & (bitRSV1 | bitRSV2 | bitRSV3), op: opcode(h[0] & 0x0f), masked: h[1]&bitMask != 0}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r, h[:2]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err := io.ReadFull(r, h[:8]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[:8])
		if n > 64<<20 {
			return f, fmt.Errorf("frame length %d", n)
		}
	}
	if f.masked {
		if _, err := io.ReadFull(r, f.key[:]); err != nil {
			return f, err
		}
	}
	f.data = make([]byte, n)
	if _, err := io.ReadFull(r, f.data); err != nil {
		return f, err
	}
	if f.masked {
		mask(f.key, f.data)
	}
	return f, nil
}

// peerCloseOf returns a close frame's code (1005 without one) and reason.
func peerCloseOf(p []byte) (int, string) {
	if len(p) < 2 {
		return websocket.CloseNoStatusReceived, ""
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:])
}

// stream builds what the raw client sends and what a conforming server
// makes of it.
type stream struct {
	rng      *mrand.Rand // masking keys; nil: a fixed key
	masked   bool        // frames from a client
	b        []byte
	data     []byte   // every data byte of valid frames, in order
	complete []byte   // the data of messages completed
	open     []byte   // the message in progress
	pings    [][]byte // ping payloads, in order
	peer     int      // the close code sent, 1005 for none
}

func newStream(rng *mrand.Rand) *stream { return &stream{rng: rng, masked: true} }

func (s *stream) key() [4]byte {
	if s.rng == nil {
		return [4]byte{0x37, 0xfa, 0x21, 0x3d}
	}
	var k [4]byte
	binary.LittleEndian.PutUint32(k[:], s.rng.Uint32())
	return k
}

// add appends a valid frame and records what it means.
func (s *stream) add(f frame) {
	s.bad(f)
	switch f.op {
	case opText, opBinary:
		s.open = append(s.open[:0], f.payload...)
		s.data = append(s.data, f.payload...)
	case opContinuation:
		s.open = append(s.open, f.payload...)
		s.data = append(s.data, f.payload...)
	case opPing:
		s.pings = append(s.pings, f.payload)
		return
	default:
		return
	}
	if !f.more {
		s.complete = append(s.complete, s.open...)
		s.open = s.open[:0]
	}
}

// bad appends a frame without recording it: an invalid one, after which
// the peer fails the connection.
func (s *stream) bad(f frame) {
	f.key = s.key()
	s.b = f.encode(s.b, s.masked && !f.unmasked)
}

// msg adds a message of op in parts fragments (the first parts-1 of
// equal size, possibly empty; the last takes the rest).
func (s *stream) msg(op opcode, payload []byte, parts int) {
	size := len(payload) / parts
	for i := range parts {
		p := payload[i*size : (i+1)*size]
		if i == parts-1 {
			p = payload[i*size:]
		}
		s.add(frame{op: op, more: i < parts-1, payload: p})
		op = opContinuation
	}
}

// close adds a close frame with code and reason (code 0: an empty one).
func (s *stream) close(code int, reason string) {
	if code == 0 {
		s.add(frame{op: opClose})
		s.peer = websocket.CloseNoStatusReceived
		return
	}
	s.add(frame{op: opClose, payload: closePayload(code, reason)})
	s.peer = code
}

// pattern returns n bytes repeating with a period of 251 (a prime, so
// that a fragment boundary or a lost piece shows), filled by doubling
// copies: fast under the race detector.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range min(n, 251) {
		b[i] = byte(i*7 + 1)
	}
	for k := 251; k < n; k *= 2 {
		copy(b[k:], b[:k])
	}
	return b
}

// echoServer is a handler that upgrades, echoes with Conn's half-close
// semantics, and sends the peer's close code (0: none read) to done.
type echoServer struct {
	name    string
	handler func(bufSize int, done chan<- int) http.Handler
}

var echoServers = []echoServer{
	{"gorilla", gorillaEcho},
	{"wsconn", wsconnEcho},
}

// gorillaEcho is the reference: gorilla/websocket echoing each data message
// as one binary message, answering pings at once (gorilla's default), and
// answering the peer's close, after echoing what came before it, with
// 1000, like Conn's CloseWrite (or Close for other codes) does. On a
// protocol error gorilla sends its close frame itself.
func gorillaEcho(_ int, done chan<- int) http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			done <- -1
			return
		}
		ws.SetCloseHandler(func(int, string) error { return nil })
		peer := 0
		for {
			var msg []byte
			_, rd, err := ws.NextReader()
			if err == nil {
				msg, err = io.ReadAll(rd)
			}
			if err == nil {
				if ws.WriteMessage(websocket.BinaryMessage, msg) != nil {
					break
				}
				continue
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
				peer = ce.Code
				ws.WriteControl(websocket.CloseMessage, closePayload(1000, ""), time.Now().Add(testTimeout))
			}
			break
		}
		ws.Close()
		done <- peer
	})
}

// wsconnEcho is Upgrade with an echo loop reading into a buffer of bufSize.
func wsconnEcho(bufSize int, done chan<- int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, err := Upgrade(w, r, &Options{KeepAlive: -1, DeadPeerTimeout: -1, WriteTimeout: testTimeout})
		if err != nil {
			done <- -1
			return
		}
		c := nc.(*Conn)
		buf := make([]byte, bufSize)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err == io.EOF {
				c.CloseWrite()
				break
			}
			if err != nil {
				break
			}
		}
		c.Close()
		peer := 0
		if pc := c.PeerClose(); pc != nil {
			peer = pc.Code
		}
		done <- peer
	})
}

// outcome is what the raw client observed of a server.
type outcome struct {
	echo   []byte
	pongs  [][]byte
	close  int // code of the server's close frame; closeNoFrame: none
	reason string
	peer   int // the client's close code as the server read it
}

// splitter returns the sizes of successive TCP writes of n bytes.
type splitter func(n int) []int

// every writes chunks of k bytes (0: all at once).
func every(k int) splitter {
	return func(n int) []int {
		if k <= 0 {
			return []int{n}
		}
		var s []int
		for ; n > 0; n -= k {
			s = append(s, min(k, n))
		}
		return s
	}
}

// randomSplit writes chunks of random sizes from 1 to max.
func randomSplit(rng *mrand.Rand, max int) splitter {
	return func(n int) []int {
		var s []int
		for n > 0 {
			k := min(1+rng.IntN(max), n)
			s = append(s, k)
			n -= k
		}
		return s
	}
}

// runServer sends b, written in pieces per split, to a fresh server of
// impl and returns what came back.
func runServer(t *testing.T, impl echoServer, bufSize int, b []byte, split splitter) outcome {
	t.Helper()
	done := make(chan int, 1)
	srv := httptest.NewServer(impl.handler(bufSize, done))
	defer srv.Close()
	raw, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rawHandshake(t, raw, "/")

	// The writer stops at the first write error (the server failed the
	// connection) or when the reader has seen the server's close frame.
	stop := make(chan struct{})
	wrote := goErr(func() error {
		for _, k := range split(len(b)) {
			select {
			case <-stop:
				return nil
			default:
			}
			if _, err := raw.Write(b[:k]); err != nil {
				return err
			}
			b = b[k:]
		}
		return nil
	})
	defer func() {
		raw.Close()
		wait(t, wrote, "the writer")
	}()

	var out outcome
	out.close = closeNoFrame
	raw.SetReadDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReaderSize(raw, 64<<10)
	for closed := false; ; {
		f, err := readFrame(br)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("%s: the server neither closed nor ended the connection within %v", impl.name, testTimeout)
			}
			if err == io.EOF || errors.Is(err, syscall.ECONNRESET) && closed {
				break
			}
			t.Fatalf("%s: reading frames: %v", impl.name, err)
		}
		if closed {
			t.Fatalf("%s: a frame (opcode %d) after the close frame", impl.name, f.op)
		}
		if f.masked || f.rsv != 0 {
			t.Fatalf("%s: server frame masked %v, RSV %#x: want unmasked, no RSV bits (RFC 6455 5.1, 5.2)", impl.name, f.masked, f.rsv)
		}
		switch f.op {
		case opBinary, opContinuation:
			out.echo = append(out.echo, f.data...)
		case opPong:
			out.pongs = append(out.pongs, f.data)
		case opClose:
			out.close, out.reason = peerCloseOf(f.data)
			if !utf8.ValidString(out.reason) {
				t.Fatalf("%s: close reason %q is not UTF-8", impl.name, out.reason)
			}
			closed = true
			close(stop)
		default:
			t.Fatalf("%s: unexpected frame opcode %d from the echo server", impl.name, f.op)
		}
	}
	out.peer = wait(t, done, "the server to end")
	return out
}

// serverCase is a stream the raw client sends and the outcome it must get.
type serverCase struct {
	name  string
	build func(s *stream)
	// close is the close code the server must send (RFC 6455); 1000 means
	// the stream was valid: everything echoed, every ping answered.
	close int
	// refClose, if set, is what gorilla sends instead (a deviation from
	// RFC 6455, said in the case).
	refClose int
	peer     int      // the client's close code the server reads (0: the stream's)
	split    splitter // nil: one byte per write
	bufSize  int      // the wsconn echo loop's read buffer (0: 1000)
}

func TestConformanceServer(t *testing.T) {
	var cases []serverCase
	add := func(c serverCase) { cases = append(cases, c) }
	// valid returns a case of a valid stream: frames, then close 1000.
	valid := func(name string, build func(s *stream)) serverCase {
		return serverCase{name: name, close: 1000, build: func(s *stream) { build(s); s.close(1000, "") }}
	}
	// invalid returns a case ending in a protocol error: the server must
	// send 1002 whatever comes after (the build may end on a valid close).
	invalid := func(name string, build func(s *stream)) serverCase {
		return serverCase{name: name, close: 1002, build: build}
	}

	// 1.1.x, 1.2.x: single frames of every length class, text and binary,
	// in every length encoding that can hold them (non-minimal included).
	for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
		for _, bits := range []int{7, 16, 64} {
			if bits == 7 && n > 125 || bits == 16 && n > 0xffff {
				continue
			}
			for _, op := range []opcode{opText, opBinary} {
				c := valid(fmt.Sprintf("1.x single op %d len %d in %d bits", op, n, bits), func(s *stream) {
					s.add(frame{op: op, payload: pattern(n), lenBits: bits})
				})
				if n > 125 {
					c.split = every(1000)
				}
				add(c)
			}
		}
	}
	// 9.1.6, 9.2.6: 16 MiB in one frame (no read limit is set: 9.x's
	// 1009 cases do not apply).
	add(serverCase{name: "9.2.6 16 MiB binary frame", close: 1000, split: every(0), bufSize: 64 << 10, build: func(s *stream) {
		s.add(frame{op: opBinary, payload: pattern(16 << 20)})
		s.close(1000, "")
	}})
	// 9.4.x: 4 MiB in fragments of 4 KiB.
	add(serverCase{name: "9.4.x 4 MiB in 4 KiB fragments", close: 1000, split: every(0), bufSize: 32 << 10, build: func(s *stream) {
		s.msg(opBinary, pattern(4<<20), 1024)
		s.close(1000, "")
	}})
	// 6.x: a text message is data: Conn is a byte stream and does not
	// check UTF-8 (nor does gorilla: it leaves that to the application).
	add(valid("6.3.1 text with invalid UTF-8 passes as bytes", func(s *stream) {
		s.add(frame{op: opText, payload: []byte("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited")})
	}))
	add(valid("6.4.x fragmented text split inside a character", func(s *stream) {
		s.add(frame{op: opText, more: true, payload: []byte("\xce")})
		s.add(frame{op: opContinuation, payload: []byte("\xba\xff")})
	}))
	// 5.x fragmentation.
	for _, parts := range []int{1, 2, 3, 10, 100} {
		add(valid(fmt.Sprintf("5.x %d fragments", parts), func(s *stream) { s.msg(opBinary, pattern(1000), parts) }))
	}
	add(valid("5.x empty fragments", func(s *stream) {
		s.add(frame{op: opBinary, more: true})
		s.add(frame{op: opContinuation, more: true, payload: []byte("ab")})
		s.add(frame{op: opContinuation, more: true})
		s.add(frame{op: opContinuation, more: true, payload: []byte("c")})
		s.add(frame{op: opContinuation})
	}))
	add(valid("5.x all fragments empty", func(s *stream) {
		s.add(frame{op: opText, more: true})
		s.add(frame{op: opContinuation})
		s.add(frame{op: opBinary, payload: []byte("after")})
	}))
	add(valid("5.6, 5.7 ping inside a fragmented message", func(s *stream) {
		s.add(frame{op: opText, more: true, payload: []byte("frag")})
		s.add(frame{op: opPing, payload: []byte("ping payload")})
		s.add(frame{op: opContinuation, payload: []byte("ment")})
	}))
	add(valid("5.8, 5.9 pings and pongs between every fragment", func(s *stream) {
		for i := range 20 {
			op := opContinuation
			if i == 0 {
				op = opBinary
			}
			s.add(frame{op: op, more: i < 19, payload: []byte{byte('a' + i)}})
			s.add(frame{op: opPing, payload: []byte(fmt.Sprint("p", i))})
			s.add(frame{op: opPong, payload: []byte("unsolicited")})
		}
	}))
	add(invalid("5.1 ping fragmented", func(s *stream) {
		s.bad(frame{op: opPing, more: true, payload: []byte("a")})
	}))
	add(invalid("5.2 pong fragmented", func(s *stream) {
		s.bad(frame{op: opPong, more: true, payload: []byte("a")})
	}))
	add(invalid("5.x close fragmented", func(s *stream) {
		s.bad(frame{op: opClose, more: true, payload: closePayload(1000, "")})
	}))
	add(invalid("5.3-5.5 continuation with no message started", func(s *stream) {
		s.bad(frame{op: opContinuation, payload: []byte("x")})
	}))
	add(invalid("5.17 continuation after a finished message", func(s *stream) {
		s.add(frame{op: opBinary, payload: []byte("done")})
		s.bad(frame{op: opContinuation, more: true, payload: []byte("x")})
	}))
	add(invalid("5.19 new data frame inside a fragmented message", func(s *stream) {
		s.add(frame{op: opBinary, payload: []byte("whole")})
		s.add(frame{op: opBinary, more: true, payload: []byte("half")})
		s.bad(frame{op: opText, payload: []byte("x")})
	}))
	// 2.x pings.
	add(valid("2.1-2.3 pings of 0, 10 and binary payload", func(s *stream) {
		s.add(frame{op: opPing})
		s.add(frame{op: opPing, payload: []byte("0123456789")})
		s.add(frame{op: opPing, payload: []byte{0, 0xff, 0xfe, 0xfd}})
	}))
	c := valid("2.4 ping of 125 bytes", func(s *stream) { s.add(frame{op: opPing, payload: pattern(125)}) })
	c.split = every(0)
	add(c)
	add(invalid("2.5 ping of 126 bytes", func(s *stream) { s.bad(frame{op: opPing, payload: pattern(126)}) }))
	add(invalid("2.x ping of 125 bytes in a 16-bit length", func(s *stream) {
		// The 7-bit length is 126, which is more than 125: a control
		// frame's length must fit in 7 bits (RFC 6455 5.5).
		s.bad(frame{op: opPing, payload: pattern(125), lenBits: 16})
	}))
	add(valid("2.6 ping of 125 bytes a byte at a time", func(s *stream) { s.add(frame{op: opPing, payload: pattern(125)}) }))
	add(valid("2.7 unsolicited pong", func(s *stream) { s.add(frame{op: opPong, payload: []byte("unsolicited")}) }))
	add(valid("2.8 unsolicited pong with payload, then a ping", func(s *stream) {
		s.add(frame{op: opPong, payload: []byte("a")})
		s.add(frame{op: opPing, payload: []byte("b")})
	}))
	add(valid("2.10, 2.11 ten pings", func(s *stream) {
		for i := range 10 {
			s.add(frame{op: opPing, payload: []byte(fmt.Sprint("payload-", i))})
		}
	}))
	// 3.x reserved bits.
	for _, rsv := range []byte{bitRSV1, bitRSV2, bitRSV3, bitRSV1 | bitRSV2 | bitRSV3} {
		add(invalid(fmt.Sprintf("3.x RSV %#x on data", rsv), func(s *stream) {
			s.add(frame{op: opBinary, payload: []byte("before")})
			s.bad(frame{op: opBinary, rsv: rsv, payload: []byte("x")})
		}))
		add(invalid(fmt.Sprintf("3.x RSV %#x on a ping", rsv), func(s *stream) {
			s.bad(frame{op: opPing, rsv: rsv, payload: []byte("x")})
		}))
	}
	// 4.x reserved opcodes.
	for _, op := range []opcode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		add(invalid(fmt.Sprintf("4.x reserved opcode %#x", op), func(s *stream) {
			s.add(frame{op: opBinary, payload: []byte("before")})
			s.bad(frame{op: op, payload: []byte("x")})
		}))
	}
	// Masking (RFC 6455 5.1): a client frame must be masked.
	add(invalid("5.1 unmasked data frame", func(s *stream) { s.bad(frame{op: opBinary, unmasked: true, payload: []byte("x")}) }))
	add(invalid("5.1 unmasked ping", func(s *stream) { s.bad(frame{op: opPing, unmasked: true}) }))
	add(valid("5.3 zero masking key", func(s *stream) {
		f := frame{op: opBinary, payload: []byte("zero key")}
		s.b = f.encode(s.b, true) // key stays zero
		s.data = append(s.data, f.payload...)
		s.complete = append(s.complete, f.payload...)
	}))
	// 64-bit length with the most significant bit set (RFC 6455 5.2).
	// gorilla fails the connection without a close frame; Conn sends 1002
	// (readError).
	add(serverCase{name: "1.x 64-bit length with MSB set", close: 1002, refClose: closeNoFrame, build: func(s *stream) {
		s.add(frame{op: opBinary, payload: []byte("before")})
		s.bad(frame{op: opBinary, rawLen: 1 << 63, payload: []byte("x")})
	}})
	// 7.x close.
	add(serverCase{name: "7.3.1 close without payload", close: 1000, build: func(s *stream) { s.close(0, "") }})
	// RFC 6455 5.5.1: a close body starts with a 2-byte code. gorilla
	// takes a 1-byte body for none (1005) and closes normally.
	add(serverCase{name: "7.3.2 close with 1-byte payload", close: 1002, refClose: 1000, peer: 1005, build: func(s *stream) {
		s.add(frame{op: opBinary, payload: []byte("before")})
		s.bad(frame{op: opClose, payload: []byte{0x03}})
	}})
	add(serverCase{name: "7.3.3 close with code only", close: 1000, build: func(s *stream) { s.close(1000, "") }})
	add(serverCase{name: "7.3.4 close with code and reason", close: 1000, build: func(s *stream) { s.close(1000, "bye") }})
	add(serverCase{name: "7.3.5 close with 123-byte reason", close: 1000, build: func(s *stream) {
		s.close(1000, strings.Repeat("r", 123))
	}})
	add(invalid("7.3.6 close with 124-byte reason", func(s *stream) {
		s.bad(frame{op: opClose, payload: closePayload(1000, strings.Repeat("r", 124))})
	}))
	// 7.5.1: RFC 6455 7.4.1 names 1007 for data not of its type; gorilla
	// sends 1002 (both fail the connection, which Autobahn accepts).
	add(serverCase{name: "7.5.1 close reason not UTF-8", close: 1007, refClose: 1002, build: func(s *stream) {
		s.bad(frame{op: opClose, payload: closePayload(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80")})
	}})
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1011, 3000, 3999, 4000, 4999} {
		add(serverCase{name: fmt.Sprintf("7.7.x valid close code %d", code), close: 1000, build: func(s *stream) {
			s.add(frame{op: opBinary, payload: []byte("data")})
			s.close(code, "reason")
		}})
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		add(invalid(fmt.Sprintf("7.9.x invalid close code %d", code), func(s *stream) {
			s.add(frame{op: opBinary, payload: []byte("data")})
			s.bad(frame{op: opClose, payload: closePayload(code, "")})
		}))
	}
	add(valid("7.1.x ping after data, then close", func(s *stream) {
		s.add(frame{op: opBinary, payload: []byte("data")})
		s.add(frame{op: opPing, payload: []byte("last")})
	}))
	add(serverCase{name: "7.1.3-7.1.5 frames after the close frame are ignored", close: 1000, build: func(s *stream) {
		s.add(frame{op: opBinary, payload: []byte("before")})
		s.close(1000, "")
		s.bad(frame{op: opBinary, payload: []byte("after")})
		s.bad(frame{op: opPing, payload: []byte("after")})
		s.bad(frame{op: opClose, payload: closePayload(1000, "")})
	}})
	// Limits and streaming.
	add(serverCase{name: "9.x 10,000 1-byte messages", close: 1000, split: every(0), build: func(s *stream) {
		for i := range 10000 {
			s.add(frame{op: opBinary, payload: []byte{byte(i)}})
		}
		s.close(1000, "")
	}})
	add(serverCase{name: "9.x 64 KiB message read 1 byte at a time", close: 1000, split: every(0), bufSize: 1, build: func(s *stream) {
		s.add(frame{op: opBinary, payload: pattern(64 << 10)})
		s.close(1000, "")
	}})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(nil)
			tc.build(s)
			split := tc.split
			if split == nil {
				split = every(1)
			}
			bufSize := tc.bufSize
			if bufSize == 0 {
				bufSize = 1000
			}
			for _, impl := range echoServers {
				out := runServer(t, impl, bufSize, s.b, split)
				checkOutcome(t, impl.name, tc, s, out)
			}
		})
	}
}

// checkOutcome compares what the raw client saw of impl with what tc and
// its stream s call for.
func checkOutcome(t *testing.T, impl string, tc serverCase, s *stream, out outcome) {
	t.Helper()
	ref := impl == "gorilla"
	want := tc.close
	if tc.refClose != 0 && ref {
		want = tc.refClose
	}
	if out.close != want {
		t.Errorf("%s: close code %d (%q), want %d", impl, out.close, out.reason, want)
	}
	wantEcho := s.data
	if ref {
		wantEcho = s.complete // gorilla reads whole messages
	}
	if !bytes.Equal(out.echo, wantEcho) {
		t.Errorf("%s: echoed %d bytes, want %d%s", impl, len(out.echo), len(wantEcho), firstDiff(out.echo, wantEcho))
	}
	if want != 1000 {
		// The connection failed: no close code read; pongs not compared
		// (RFC 6455 7.1.7: a failing endpoint need not answer a ping).
		if out.peer != 0 {
			t.Errorf("%s: the server read close code %d, want none", impl, out.peer)
		}
		return
	}
	peer := tc.peer
	if peer == 0 {
		peer = s.peer
	}
	if out.peer != peer {
		t.Errorf("%s: the server read close code %d, want %d", impl, out.peer, peer)
	}
	checkPongs(t, impl, ref, s.pings, out.pongs)
}

// checkPongs checks pongs against the pings sent: all of them, in order,
// from the reference; from Conn, a subsequence ending with the last ping
// (RFC 6455 5.5.3).
func checkPongs(t *testing.T, impl string, all bool, pings, pongs [][]byte) {
	t.Helper()
	if all {
		if !slices.EqualFunc(pongs, pings, bytes.Equal) {
			t.Errorf("%s: pongs %q, want %q", impl, pongs, pings)
		}
		return
	}
	if len(pings) == 0 {
		if len(pongs) != 0 {
			t.Errorf("%s: pongs %q, want none", impl, pongs)
		}
		return
	}
	if len(pongs) == 0 || !bytes.Equal(pongs[len(pongs)-1], pings[len(pings)-1]) {
		t.Errorf("%s: pongs %q: the last ping %q is not answered last", impl, pongs, pings[len(pings)-1])
		return
	}
	i := 0
	for _, p := range pongs {
		for i < len(pings) && !bytes.Equal(pings[i], p) {
			i++
		}
		if i == len(pings) {
			t.Errorf("%s: pongs %q are not a subsequence of the pings %q", impl, pongs, pings)
			return
		}
		i++
	}
}

// firstDiff describes where a and b first differ.
func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf(", first difference at byte %d: %#x, want %#x", i, a[i], b[i])
		}
	}
	return ""
}

// TestConformanceServerRandom sends random valid streams (fragments, empty
// ones included, with pings and pongs between them, in all length
// encodings), split at random points, and checks that both servers echo
// the same bytes and answer the pings.
func TestConformanceServerRandom(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := mrand.New(mrand.NewPCG(seed, 16))
			s := newStream(rng)
			for range 30 + rng.IntN(30) {
				parts := 1 + rng.IntN(5)
				for i := range parts {
					op := opContinuation
					if i == 0 {
						op = []opcode{opText, opBinary}[rng.IntN(2)]
					}
					n := []int{0, 1 + rng.IntN(125), 126 + rng.IntN(2000), rng.IntN(70000)}[rng.IntN(4)]
					bits := []int{0, 16, 64}[rng.IntN(3)]
					if bits == 16 && n > 0xffff {
						bits = 64
					}
					s.add(frame{op: op, more: i < parts-1, payload: pattern(n)[:n:n], lenBits: bits})
					switch rng.IntN(4) {
					case 0:
						p := make([]byte, rng.IntN(126))
						for j := range p {
							p[j] = byte(rng.Uint32())
						}
						s.add(frame{op: opPing, payload: p})
					case 1:
						s.add(frame{op: opPong, payload: []byte("unsolicited")})
					}
				}
			}
			s.close(1000, "")
			bufSize := 1 + rng.IntN(5000)
			var echoes [][]byte
			for _, impl := range echoServers {
				out := runServer(t, impl, bufSize, s.b, randomSplit(rng, 3000))
				checkOutcome(t, impl.name, serverCase{close: 1000}, s, out)
				echoes = append(echoes, out.echo)
			}
			if !bytes.Equal(echoes[0], echoes[1]) {
				t.Errorf("the servers echoed different bytes%s", firstDiff(echoes[1], echoes[0]))
			}
		})
	}
}

// rawServer is a websocket server written by hand: it answers the upgrade
// with first right behind the 101 response, in one write (so in one TCP
// segment), then runs script on the connection.
func rawServer(t *testing.T, first []byte, script func(c net.Conn, br *bufio.Reader)) (url string, ended <-chan struct{}) {
	t.Helper()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + acceptKey(r.Header.Get("Sec-Websocket-Key")) + "\r\n\r\n"
		if _, err := c.Write(append([]byte(resp), first...)); err != nil {
			t.Errorf("writing the 101 response: %v", err)
			return
		}
		c.SetDeadline(time.Now().Add(testTimeout))
		script(c, brw.Reader)
	}))
	t.Cleanup(srv.Close)
	// Hijacked, the handler is not waited for by srv.Close; its conn's
	// deadline bounds it.
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(testTimeout):
		}
	})
	return wsURL(srv), done
}

// serverFrames encodes server frames (unmasked).
func serverFrames(fs ...frame) []byte {
	var b []byte
	for _, f := range fs {
		b = f.encode(b, false)
	}
	return b
}

// dial opens a Conn to url without keepalive pings.
func dial(t *testing.T, url string) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := Dial(ctx, url, nil, &DialOptions{KeepAlive: -1, DeadPeerTimeout: -1, WriteTimeout: testTimeout})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return c.(*Conn)
}

// clientFrames reads the client's frames until its close frame, checking
// each is masked (RFC 6455 5.1) and has no RSV bits, and returns the data,
// the pongs and the close code and reason.
func clientFrames(t *testing.T, br *bufio.Reader) (data []byte, pongs [][]byte, code int, reason string) {
	t.Helper()
	for {
		f, err := readFrame(br)
		if err != nil {
			t.Errorf("reading the client's frames: %v", err)
			return data, pongs, closeNoFrame, ""
		}
		if !f.masked || f.rsv != 0 {
			t.Errorf("client frame (opcode %d) masked %v, RSV %#x: want masked, no RSV bits", f.op, f.masked, f.rsv)
		}
		switch f.op {
		case opBinary, opContinuation:
			data = append(data, f.data...)
		case opPong:
			pongs = append(pongs, f.data)
		case opClose:
			code, reason = peerCloseOf(f.data)
			return data, pongs, code, reason
		default:
			t.Errorf("unexpected client frame opcode %d", f.op)
		}
	}
}

func TestConformanceClient(t *testing.T) {
	t.Run("frames in the segment of the 101 response", func(t *testing.T) {
		first := serverFrames(
			frame{op: opBinary, payload: []byte("hello ")},
			frame{op: opText, more: true, payload: []byte("wor")},
			frame{op: opPing, payload: []byte("in between")},
			frame{op: opContinuation, more: true},
			frame{op: opContinuation, payload: []byte("ld")},
			frame{op: opClose, payload: closePayload(1001, "going")},
		)
		type result struct {
			pongs [][]byte
			code  int
		}
		got := make(chan result, 1)
		url, ended := rawServer(t, first, func(c net.Conn, br *bufio.Reader) {
			_, pongs, code, _ := clientFrames(t, br)
			got <- result{pongs, code}
		})
		c := dial(t, url)
		data, err := readAll(c, 3)
		if err != nil || string(data) != "hello world" {
			t.Fatalf("read %q, %v; want \"hello world\" and io.EOF", data, err)
		}
		if pc := c.PeerClose(); pc == nil || pc.Code != 1001 || pc.Reason != "going" {
			t.Fatalf("PeerClose %+v, want 1001 \"going\"", pc)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		r := wait(t, got, "the client's close frame")
		wait(t, ended, "the server to end")
		if len(r.pongs) != 1 || string(r.pongs[0]) != "in between" || r.code != 1000 {
			t.Fatalf("client sent pongs %q and close %d, want the pong \"in between\" then 1000", r.pongs, r.code)
		}
	})

	// 5.x, 9.x: a fragmented server message in every length encoding,
	// with pings between the fragments, written in random pieces.
	t.Run("5.x fragmented server message in random pieces", func(t *testing.T) {
		rng := mrand.New(mrand.NewPCG(6455, 1))
		s := &stream{rng: rng}
		s.add(frame{op: opBinary, more: true, payload: pattern(70000), lenBits: 64})
		s.add(frame{op: opPing, payload: []byte("first")})
		s.add(frame{op: opContinuation, more: true})
		s.add(frame{op: opContinuation, more: true, payload: pattern(126), lenBits: 16})
		s.add(frame{op: opPing, payload: []byte("second")})
		s.add(frame{op: opContinuation, more: true, payload: pattern(3), lenBits: 64})
		s.add(frame{op: opPong, payload: []byte("unsolicited")})
		s.add(frame{op: opContinuation, payload: pattern(65535)})
		s.close(1000, "")
		type result struct {
			pongs [][]byte
			code  int
		}
		got := make(chan result, 1)
		url, ended := rawServer(t, nil, func(c net.Conn, br *bufio.Reader) {
			b := s.b
			for _, k := range randomSplit(rng, 3000)(len(b)) {
				if _, err := c.Write(b[:k]); err != nil {
					t.Errorf("writing frames: %v", err)
					break
				}
				b = b[k:]
			}
			_, pongs, code, _ := clientFrames(t, br)
			got <- result{pongs, code}
		})
		c := dial(t, url)
		data, err := readAll(c, 1000)
		if err != nil || !bytes.Equal(data, s.data) {
			t.Fatalf("read %d bytes, %v; want %d and io.EOF%s", len(data), err, len(s.data), firstDiff(data, s.data))
		}
		c.CloseWrite()
		r := wait(t, got, "the client's close frame")
		wait(t, ended, "the server to end")
		checkPongs(t, "wsconn client", false, s.pings, r.pongs)
		if r.code != 1000 {
			t.Errorf("client close %d, want 1000", r.code)
		}
	})

	t.Run("7.x close code and reason surface", func(t *testing.T) {
		for _, tc := range []struct {
			code   int
			reason string
			eof    bool
		}{
			{1000, "", true}, {1000, "done", true}, {1001, "going", true}, {1011, "it broke", false},
			{3000, "private", false}, {4999, "x", false}, {0, "", true},
		} {
			var payload []byte
			if tc.code != 0 {
				payload = closePayload(tc.code, tc.reason)
			}
			code := make(chan int, 1)
			url, ended := rawServer(t, serverFrames(frame{op: opBinary, payload: []byte("data")}, frame{op: opClose, payload: payload}),
				func(c net.Conn, br *bufio.Reader) {
					_, _, got, _ := clientFrames(t, br)
					code <- got
				})
			c := dial(t, url)
			data, err := readAll(c, 100)
			want := tc.code
			if want == 0 {
				want = websocket.CloseNoStatusReceived
			}
			var ce *CloseError
			switch {
			case string(data) != "data":
				t.Errorf("close %d: read %q, want \"data\"", tc.code, data)
			case tc.eof && err != nil:
				t.Errorf("close %d: read error %v, want io.EOF", tc.code, err)
			case !tc.eof && (!errors.As(err, &ce) || ce.Code != want || ce.Reason != tc.reason):
				t.Errorf("close %d: read error %v, want a *CloseError with %d %q", tc.code, err, want, tc.reason)
			}
			if pc := c.PeerClose(); pc == nil || pc.Code != want || pc.Reason != tc.reason {
				t.Errorf("close %d: PeerClose %+v, want %d %q", tc.code, pc, want, tc.reason)
			}
			c.Close()
			if got := wait(t, code, "the client's close frame"); got != 1000 {
				t.Errorf("close %d: the client answered %d, want 1000", tc.code, got)
			}
			wait(t, ended, "the server to end")
		}
	})

	// Protocol errors in the server's frames: Read fails (not io.EOF, not
	// a *CloseError: the server did not close) and the client sends 1002.
	for _, tc := range []struct {
		name string
		f    frame // a non-zero key: sent masked
		open bool  // "ok" goes as the first fragment of a message
	}{
		{"5.1 masked server frame", frame{op: opBinary, payload: []byte("x"), key: [4]byte{1, 2, 3, 4}}, false},
		{"3.x RSV1", frame{op: opBinary, rsv: bitRSV1, payload: []byte("x")}, false},
		{"4.x opcode 0xB", frame{op: 0xB}, false},
		{"2.5 ping of 126 bytes", frame{op: opPing, payload: pattern(126)}, false},
		{"5.1 fragmented ping", frame{op: opPing, more: true}, false},
		{"5.3 continuation with no message", frame{op: opContinuation, payload: []byte("x")}, false},
		{"5.19 data frame inside a fragmented message", frame{op: opBinary, payload: []byte("x")}, true},
		{"1.x 64-bit length with MSB set", frame{op: opBinary, rawLen: 1 << 63, payload: []byte("x")}, false},
		{"7.9.x close code 1005", frame{op: opClose, payload: closePayload(1005, "")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := serverFrames(frame{op: opBinary, more: tc.open, payload: []byte("ok")})
			if tc.f.key != [4]byte{} {
				b = tc.f.encode(b, true)
			} else {
				b = tc.f.encode(b, false)
			}
			code := make(chan int, 1)
			url, ended := rawServer(t, b, func(c net.Conn, br *bufio.Reader) {
				_, _, got, _ := clientFrames(t, br)
				code <- got
			})
			c := dial(t, url)
			data, err := readAll(c, 100)
			var ce *CloseError
			if string(data) != "ok" || err == nil || errors.As(err, &ce) {
				t.Errorf("read %q, %v; want \"ok\", then a protocol error", data, err)
			}
			c.Close()
			if got := wait(t, code, "the client's close frame"); got != websocket.CloseProtocolError {
				t.Errorf("the client sent close %d, want %d", got, websocket.CloseProtocolError)
			}
			wait(t, ended, "the server to end")
		})
	}

	// 2.x: the client answers pings while a writer keeps it busy: the
	// writer goes on until the server has its pong for the last ping.
	t.Run("2.x pings answered while the client writes", func(t *testing.T) {
		const size, npings, maxMsgs = 4 << 10, 8, 20000
		msg := pattern(size)
		var pings [][]byte
		for i := range npings {
			pings = append(pings, []byte(fmt.Sprint("ping ", i)))
		}
		type result struct {
			data  []byte
			pongs [][]byte
			code  int
		}
		got := make(chan result, 1)
		answered := make(chan struct{})
		url, ended := rawServer(t, nil, func(c net.Conn, br *bufio.Reader) {
			var r result
			sent := 0
			for {
				f, err := readFrame(br)
				if err != nil {
					t.Errorf("reading the client's frames: %v", err)
					break
				}
				if !f.masked || f.rsv != 0 {
					t.Errorf("client frame masked %v, RSV %#x", f.masked, f.rsv)
				}
				if f.op == opClose {
					r.code, _ = peerCloseOf(f.data)
					break
				}
				if f.op == opPong {
					r.pongs = append(r.pongs, f.data)
					if bytes.Equal(f.data, pings[npings-1]) {
						close(answered)
					}
					continue
				}
				r.data = append(r.data, f.data...)
				// A ping after each of the first data frames.
				if sent < npings {
					c.Write(serverFrames(frame{op: opPing, payload: pings[sent]}))
					sent++
				}
			}
			c.Write(serverFrames(frame{op: opClose, payload: closePayload(1000, "")}))
			got <- r
		})
		c := dial(t, url)
		// Reading is what answers pings; it ends with the server's close.
		read := goErr(func() error { _, err := readAll(c, 100); return err })
		n := 0
	write:
		for ; n < maxMsgs; n++ {
			select {
			case <-answered:
				break write
			default:
			}
			if _, err := c.Write(msg); err != nil {
				t.Fatal(err)
			}
		}
		c.CloseWrite()
		r := wait(t, got, "the server's frames")
		if err := wait(t, read, "the client's read"); err != nil {
			t.Errorf("client read: %v, want io.EOF", err)
		}
		c.Close()
		wait(t, ended, "the server to end")
		if want := bytes.Repeat(msg, n); !bytes.Equal(r.data, want) {
			t.Errorf("server read %d bytes, want %d%s", len(r.data), len(want), firstDiff(r.data, want))
		}
		if r.code != 1000 {
			t.Errorf("client close %d, want 1000", r.code)
		}
		checkPongs(t, "wsconn client", false, pings, r.pongs)
		if n == maxMsgs {
			t.Errorf("the last ping was not answered while the client wrote %d messages", n)
		}
	})
}
