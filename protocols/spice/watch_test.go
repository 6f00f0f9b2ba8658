package spice

import (
	"bytes"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/virtconsole/virtconsole/protocols/nettest"
)

// mainStream builds a server→viewer main channel stream as spice-server
// sends it: INIT, the network test's pings (one of 250 KiB), the VM's
// name, and, after the client's ATTACH_CHANNELS, the channel list.
func mainStream(mini bool, session uint32, list []ChannelID) []byte {
	return mainStreamPing(mini, session, list, 250*1024)
}

// mainStreamPing is mainStream with a ping of pingData bytes of data.
func mainStreamPing(mini bool, session uint32, list []ChannelID, pingData int) []byte {
	var b []byte
	serial := uint64(0)
	add := func(typ MsgType, body []byte) {
		serial++
		b = AppendMessage(b, mini, serial, typ, body)
	}
	init := le.AppendUint32(nil, session)
	init = append(init, make([]byte, 28)...)
	add(MsgMainInit, init)
	add(MsgPing, make([]byte, 12))
	add(MsgPing, make([]byte, 12+pingData))
	add(113, append(le.AppendUint32(nil, 3), "vm\x00"...)) // SPICE_MSG_MAIN_NAME
	add(MsgMainChannelsList, channelsBody(list))
	return b
}

func channelsBody(list []ChannelID) []byte {
	b := le.AppendUint32(nil, uint32(len(list)))
	for _, c := range list {
		b = append(b, byte(c.Type), c.ID)
	}
	return b
}

var testList = []ChannelID{{ChannelDisplay, 0}, {ChannelCursor, 0}, {ChannelInputs, 0}}

// watchAll reads everything from in through WatchMain in chunks of at
// most chunk bytes (0: as much as Read is given) and returns what came
// out, the reports and the error (nil at EOF).
func watchAll(in []byte, mini bool, chunk int) (out []byte, reports []MainInfo, err error) {
	c := newMemConn(in)
	c.chunk = chunk
	w := WatchMain(c, mini, func(i MainInfo) { reports = append(reports, i) })
	buf := make([]byte, 32<<10)
	for {
		n, rerr := w.Read(buf)
		out = append(out, buf[:n]...)
		if rerr == io.EOF {
			return out, reports, nil
		}
		if rerr != nil {
			return out, reports, rerr
		}
	}
}

func TestWatchMain(t *testing.T) {
	for _, mini := range []bool{true, false} {
		stream := mainStream(mini, 0x1234abcd, testList)
		// Bytes after the list are not looked at: a malformed INIT
		// there must pass.
		tail := AppendMessage(nil, mini, 99, MsgMainInit, []byte{1})
		in := cat(stream, tail, []byte("more"))
		for _, chunk := range []int{1, 5, 6, 17, 18, 1000, 0} {
			out, reports, err := watchAll(in, mini, chunk)
			if err != nil {
				t.Fatalf("mini %v chunk %d: %v", mini, chunk, err)
			}
			if !bytes.Equal(out, in) {
				t.Fatalf("mini %v chunk %d: bytes changed", mini, chunk)
			}
			want := []MainInfo{
				{SessionID: 0x1234abcd, HasSessionID: true},
				{SessionID: 0x1234abcd, HasSessionID: true, Channels: testList, HasChannels: true},
			}
			if !reflect.DeepEqual(reports, want) {
				t.Fatalf("mini %v chunk %d: reports %+v", mini, chunk, reports)
			}
		}
	}
}

// TestWatchMainReportsFirst checks that a message is reported before the
// Read that completes it returns, so that the viewer cannot see the
// session id before the registry does.
func TestWatchMainReportsFirst(t *testing.T) {
	stream := mainStream(true, 7, testList)
	c := newMemConn(stream)
	c.chunk = 3
	returned := 0
	var seenAt []int
	w := WatchMain(c, true, func(MainInfo) { seenAt = append(seenAt, returned) })
	buf := make([]byte, 64)
	for {
		n, err := w.Read(buf)
		returned += n
		if err != nil {
			break
		}
	}
	initEnd := miniHeaderLen + 32
	if len(seenAt) != 2 || seenAt[0] >= initEnd || seenAt[1] >= len(stream) {
		t.Errorf("reported after %v bytes were returned; INIT ends at %d, the list at %d", seenAt, initEnd, len(stream))
	}
}

func TestWatchMainErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		msg  string
	}{
		{"oversized INIT", AppendMessage(nil, true, 0, MsgMainInit, make([]byte, MaxInspectedMessage+1)), "SPICE_MSG_MAIN_INIT of 65537 bytes"},
		{"huge INIT header only", le.AppendUint32(le.AppendUint16(nil, uint16(MsgMainInit)), 0xffffffff), "4294967295 bytes"},
		{"short INIT", AppendMessage(nil, true, 0, MsgMainInit, []byte{1, 2}), "SPICE_MSG_MAIN_INIT of 2 bytes"},
		{"short list", AppendMessage(nil, true, 0, MsgMainChannelsList, []byte{1}), "too short for a count"},
		{"truncated list", AppendMessage(nil, true, 0, MsgMainChannelsList, cat(le.AppendUint32(nil, 3), []byte{2, 0, 3})), "3 channels"},
		{"too many channels", AppendMessage(nil, true, 0, MsgMainChannelsList, le.AppendUint32(nil, MaxChannels+1)), "1025 channels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := watchAll(tc.in, true, 0)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "spice: ") {
				t.Fatalf("%v, want %q", err, tc.msg)
			}
			if len(out) != 0 {
				t.Errorf("%d bytes of a malformed message passed", len(out))
			}
			// The error sticks.
			c := newMemConn(tc.in)
			w := WatchMain(c, true, nil)
			w.Read(make([]byte, len(tc.in)))
			if _, err2 := w.Read(make([]byte, 10)); err2 == nil {
				t.Error("a second Read succeeded")
			}
		})
	}
}

func TestWatchMainStopsWatching(t *testing.T) {
	// A viewer that never attaches: after maxWatchedMessages messages the
	// watcher stops, and even a malformed INIT passes.
	var in []byte
	for range maxWatchedMessages {
		in = AppendMessage(in, true, 0, MsgPing, make([]byte, 12))
	}
	in = AppendMessage(in, true, 0, MsgMainInit, []byte{1})
	out, reports, err := watchAll(in, true, 0)
	if err != nil || !bytes.Equal(out, in) || len(reports) != 0 {
		t.Fatalf("%v, %d reports", err, len(reports))
	}
	// Zero-length messages count too.
	in = nil
	for range maxWatchedMessages {
		in = AppendMessage(in, false, 0, MsgSetAck, nil)
	}
	in = AppendMessage(in, false, 0, MsgMainChannelsList, nil)
	if _, _, err := watchAll(in, false, 7); err != nil {
		t.Fatal(err)
	}
}

func TestWatchMainCloseWrite(t *testing.T) {
	a, _ := nettest.TCPPair(t)
	w := WatchMain(a, true, nil)
	cw, ok := w.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("no CloseWrite over a TCP conn")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Error(err)
	}
	if _, ok := WatchMain(newMemConn(nil), true, nil).(interface{ CloseWrite() error }); ok {
		t.Error("CloseWrite over a conn without one")
	}
	var _ net.Conn = w
}

// TestWatchRecorded runs the watcher over QEMU 7.2's main channel streams
// (testdata/fuzz/FuzzMainWatcher/qemu-*; the network test's 250 KiB ping
// cut to 512 bytes).
func TestWatchRecorded(t *testing.T) {
	for name, b := range readSeeds(t, "FuzzMainWatcher") {
		mini := !strings.Contains(name, "full")
		_, reports, err := watchAll(b, mini, 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(reports) != 2 || reports[0].SessionID == 0 || !reports[1].HasChannels {
			t.Fatalf("%s: %+v", name, reports)
		}
		if got := reports[1].Channels; !reflect.DeepEqual(got, testList) {
			t.Errorf("%s: QEMU 7.2 with -vga qxl listed %v", name, got)
		}
	}
}
