package spice

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every link stage in the tests.
const testTimeout = 15 * time.Second

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (a, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	a, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// memConn is a net.Conn whose reads come from a fixed byte slice (then
// io.EOF) and whose writes are kept. It records the largest read asked
// for, to check that no length from the wire sizes a read.
type memConn struct {
	r       *bytes.Reader
	w       bytes.Buffer
	maxRead int
	chunk   int // if > 0, at most this many bytes per Read
}

func newMemConn(b []byte) *memConn { return &memConn{r: bytes.NewReader(b)} }

func (c *memConn) Read(p []byte) (int, error) {
	c.maxRead = max(c.maxRead, len(p))
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}
func (c *memConn) Write(p []byte) (int, error)        { return c.w.Write(p) }
func (c *memConn) Close() error                       { return nil }
func (c *memConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(t time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(t time.Time) error { return nil }

// capWords builds a caps word list with the given bits set.
func capWords(bits ...int) []uint32 {
	var w []uint32
	for _, b := range bits {
		for len(w) <= b/32 {
			w = append(w, 0)
		}
		w[b/32] |= 1 << (b % 32)
	}
	return w
}

// viewerCaps are the common caps remote-viewer (spice-gtk) sets.
var viewerCaps = capWords(CommonCapAuthSelection, CommonCapAuthSpice, CommonCapMiniHeader)

// qemuReplyCaps are the common caps QEMU 7.2 sets in a link reply.
var qemuReplyCaps = capWords(CommonCapAuthSelection, CommonCapAuthSpice, CommonCapMiniHeader)

// testKey is an RSA-1024 key for fake servers.
var testKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, TicketKeyBits)
	if err != nil {
		panic(err)
	}
	return k
})

// okReply is a link reply as QEMU sends it, with key's public half.
func okReply(t testing.TB, key *rsa.PrivateKey, common []uint32, channel ...uint32) []byte {
	t.Helper()
	r := LinkReply{CommonCaps: common, ChannelCaps: channel}
	der, err := marshalPub(key)
	if err != nil {
		t.Fatal(err)
	}
	copy(r.PubKey[:], der)
	return r.Marshal()
}

// viewerClient is the viewer side of a link stage, as spice-gtk runs it.
type viewerClient struct {
	conn net.Conn
	link *Link
	// filled in by linkStage
	reply  *LinkReply
	result LinkError
	mini   bool
}

// linkStage sends the link message, reads the reply, sends the auth
// mechanism (if the server offers selection) and password encrypted with
// the reply's key, and reads the link result. A refusal in the reply is
// returned as its code with a nil error.
func (c *viewerClient) linkStage(password string) error {
	if _, err := c.conn.Write(c.link.Marshal()); err != nil {
		return err
	}
	var h [linkHeaderLen]byte
	if _, err := io.ReadFull(c.conn, h[:]); err != nil {
		return fmt.Errorf("reading the link reply header: %w", err)
	}
	size, err := linkHeaderSize(h[:], linkReplyLen, "server")
	if err != nil {
		return err
	}
	raw := make([]byte, linkHeaderLen+size)
	copy(raw, h[:])
	if _, err := io.ReadFull(c.conn, raw[linkHeaderLen:]); err != nil {
		return fmt.Errorf("reading the link reply: %w", err)
	}
	if c.reply, err = ParseLinkReply(raw); err != nil {
		return err
	}
	if c.reply.Error != LinkOK {
		c.result = c.reply.Error
		return nil
	}
	c.mini = c.link.HasCommonCap(CommonCapMiniHeader) && c.reply.HasCommonCap(CommonCapMiniHeader)
	key, err := parsePubKey(c.reply.PubKey[:])
	if err != nil {
		return err
	}
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, key, append([]byte(password), 0), nil)
	if err != nil {
		return err
	}
	var out []byte
	if c.reply.HasCommonCap(CommonCapAuthSelection) {
		out = le.AppendUint32(out, AuthMechSpice)
	}
	if _, err := c.conn.Write(append(out, enc...)); err != nil {
		return err
	}
	var res [4]byte
	if _, err := io.ReadFull(c.conn, res[:]); err != nil {
		return fmt.Errorf("reading the link result: %w", err)
	}
	c.result = LinkError(le.Uint32(res[:]))
	return nil
}

// message is one message after the link stage.
type message struct {
	typ  MsgType
	body []byte
}

// readMessage reads one message with the header the link negotiated.
func (c *viewerClient) readMessage() (message, error) {
	n := fullHeaderLen
	if c.mini {
		n = miniHeaderLen
	}
	h := make([]byte, n)
	if _, err := io.ReadFull(c.conn, h); err != nil {
		return message{}, err
	}
	if !c.mini {
		h = h[8:]
	}
	m := message{typ: MsgType(le.Uint16(h))}
	size := le.Uint32(h[2:])
	if size > 1<<20 {
		return message{}, fmt.Errorf("message type %d of %d bytes", m.typ, size)
	}
	m.body = make([]byte, size)
	_, err := io.ReadFull(c.conn, m.body)
	return m, err
}

// writeMessage sends one message with the header the link negotiated.
func (c *viewerClient) writeMessage(typ MsgType, body []byte) error {
	_, err := c.conn.Write(appendMessage(nil, c.mini, 1, typ, body))
	return err
}

// appendMessage appends a message with a mini or full header.
func appendMessage(b []byte, mini bool, serial uint64, typ MsgType, body []byte) []byte {
	if !mini {
		b = le.AppendUint64(b, serial)
	}
	b = le.AppendUint16(b, uint16(typ))
	b = le.AppendUint32(b, uint32(len(body)))
	if !mini {
		b = le.AppendUint32(b, 0)
	}
	return append(b, body...)
}

// waitFor reads messages until one of type typ.
func (c *viewerClient) waitFor(typ MsgType) (message, error) {
	for i := 0; i < 100; i++ {
		m, err := c.readMessage()
		if err != nil {
			return m, err
		}
		if m.typ == typ {
			return m, nil
		}
	}
	return message{}, fmt.Errorf("no message of type %d in 100", typ)
}

// pipe copies a to b and b to a until either ends, then closes both; it
// returns when both copies are done.
func pipe(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		io.Copy(struct{ io.Writer }{dst}, struct{ io.Reader }{src})
		a.Close()
		b.Close()
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}

// writeSeed writes a fuzz corpus file for target in the go test fuzz v1
// format.
func writeSeed(t testing.TB, target, name string, data ...[]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, d := range data {
		fmt.Fprintf(&b, "[]byte(%q)\n", d)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// isCode reports whether err carries link error code.
func isCode(err error, code LinkError) bool {
	return err != nil && Code(err) == code
}

// serve answers the server as a viewer does until the conn ends: it
// acknowledges messages when the server asks for acks (SET_ACK: an
// ACK_SYNC, then an ACK every window messages) and answers pings. A
// display channel viewer that does neither makes spice-server's display
// worker wait for it, which stalls QEMU.
func (c *viewerClient) serve() {
	var window, count uint32
	for {
		m, err := c.readMessage()
		if err != nil {
			return
		}
		switch m.typ {
		case MsgSetAck:
			if len(m.body) >= 8 {
				window, count = le.Uint32(m.body[4:]), 0
				c.writeMessage(MsgcAckSync, m.body[:4])
			}
			continue
		case MsgPing:
			if len(m.body) >= 12 {
				c.writeMessage(MsgcPong, m.body[:12])
			}
		}
		if window > 0 {
			if count++; count >= window {
				count = 0
				c.writeMessage(MsgcAck, nil)
			}
		}
	}
}
