package spice

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
)

// checkError fails t unless err is one line starting "spice: ".
func checkError(t *testing.T, err error) {
	t.Helper()
	if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "spice: ") {
		t.Fatalf("error not one line starting spice: %q", msg)
	}
}

// FuzzReadLink feeds what a viewer sends to ReadLink: no panic, no read
// sized beyond the link bounds, one-line errors with a link error code,
// and on success the raw bytes are a prefix of the input that parses to
// the same message and survives a Marshal round trip. Seeds include the
// link messages QEMU 7.2 accepted in the QEMU tests
// (testdata/fuzz/FuzzReadLink/qemu-*, written with -update-corpus).
func FuzzReadLink(f *testing.F) {
	for _, l := range []*Link{
		{ChannelType: ChannelMain, CommonCaps: viewerCaps},
		{ConnectionID: 0x11223344, ChannelType: ChannelDisplay, CommonCaps: viewerCaps, ChannelCaps: []uint32{0x1ff}},
		{ConnectionID: 1, ChannelType: ChannelUSBRedir, ChannelID: 2},
	} {
		f.Add(l.Marshal())
	}
	f.Add(linkBytes(Magic, 2, 26, linkBody(1, 1, 18, 7, 9)))
	f.Add(linkBytes(Magic, 2, 22, linkBody(1, 0, 0xfffffffe, 1)))
	f.Add(linkBytes(Magic, 1, 18, linkBody(0, 0, 18)))
	f.Add(linkBytes(Magic, 2, MaxLinkSize+1, nil))
	f.Add([]byte("GET /websockify HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newMemConn(data)
		l, raw, err := ReadLink(context.Background(), c)
		if c.maxRead > MaxLinkSize {
			t.Fatalf("a read of %d bytes", c.maxRead)
		}
		if c.w.Len() != 0 {
			t.Fatalf("ReadLink wrote %q", c.w.Bytes())
		}
		if err != nil {
			checkError(t, err)
			if Code(err) == LinkOK {
				t.Fatal("an error with code ok")
			}
			// What the proxy answers must be a well-formed refusal.
			r := newMemConn(nil)
			if Refuse(context.Background(), r, Code(err)); !isRefusal(r.w.Bytes()) {
				t.Fatalf("Refuse sent %x", r.w.Bytes())
			}
			return
		}
		if !bytes.HasPrefix(data, raw) {
			t.Fatal("raw is not what was read")
		}
		l2, err := ParseLink(raw)
		if err != nil || !reflect.DeepEqual(l, l2) {
			t.Fatalf("ParseLink(raw) = %+v, %v; ReadLink gave %+v", l2, err, l)
		}
		l3, err := ParseLink(l.Marshal())
		if err != nil || !reflect.DeepEqual(l, l3) {
			t.Fatalf("round trip: %+v, %v; want %+v", l3, err, l)
		}
	})
}

func isRefusal(b []byte) bool {
	r, err := ParseLinkReply(b)
	return err == nil && r.Error != LinkOK
}

// FuzzLinkReply feeds what QEMU sends (link reply, link result) to
// Forward, relaying and taking over the ticket, for viewers with and
// without auth selection: no panic, no hang, bounded reads, one-line
// errors; on success the viewer got a reply and an ok result, and QEMU
// got the link message and a ticket (the proxy's own when it took over).
// Seeds include QEMU 7.2's replies and results from the QEMU tests
// (testdata/fuzz/FuzzLinkReply/qemu-*).
func FuzzLinkReply(f *testing.F) {
	key := testKey()
	ok := le.AppendUint32(nil, 0)
	f.Add(cat(okReply(f, key, qemuReplyCaps), ok))
	f.Add(cat(okReply(f, key, capWords(CommonCapMiniHeader)), ok))
	f.Add(cat(okReply(f, key, capWords(CommonCapAuthSelection, CommonCapAuthSASL)), ok))
	f.Add(cat(okReply(f, key, qemuReplyCaps, 0xffffffff, 3), le.AppendUint32(nil, uint32(LinkErrPermissionDenied))))
	f.Add(errorReply(LinkErrNeedSecured))
	f.Add(cat((&LinkReply{CommonCaps: qemuReplyCaps}).Marshal(), ok))
	f.Add([]byte("RFB 003.008\n"))
	links := []*Link{
		{ChannelType: ChannelMain, CommonCaps: viewerCaps},
		{ConnectionID: 3, ChannelType: ChannelInputs},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, link := range links {
			for _, password := range []string{"", "pw"} {
				raw := link.Marshal()
				v := newMemConn(viewerTicket(true))
				q := newMemConn(data)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				info, err := Forward(ctx, v, q, link, raw, password)
				cancel()
				if v.maxRead > TicketLen || q.maxRead > MaxLinkSize {
					t.Fatalf("reads of %d (viewer) and %d (QEMU) bytes", v.maxRead, q.maxRead)
				}
				sent := q.w.Bytes()
				if !bytes.HasPrefix(sent, raw) {
					t.Fatalf("QEMU got %x first", head(sent))
				}
				if err != nil {
					checkError(t, err)
					if Code(err) == LinkOK {
						t.Fatal("an error with code ok")
					}
					continue
				}
				got := v.w.Bytes()
				if len(got) < linkHeaderLen+linkReplyLen+linkResultLen || !bytes.Equal(got[len(got)-4:], []byte{0, 0, 0, 0}) {
					t.Fatalf("success, but the viewer got %x", head(got))
				}
				if info.Reply == nil || info.Reply.Error != LinkOK {
					t.Fatalf("success with reply %+v", info.Reply)
				}
				ticket := sent[len(raw):]
				if link.HasCommonCap(CommonCapAuthSelection) {
					ticket = ticket[authMechLen:]
				}
				if len(ticket) != TicketLen {
					t.Fatalf("QEMU got a %d-byte ticket", len(ticket))
				}
				// The viewer's ticket: after its mechanism when the reply
				// offered selection, else its first TicketLen bytes.
				vt := viewerTicket(true)[:TicketLen]
				if info.Reply.HasCommonCap(CommonCapAuthSelection) {
					vt = viewerTicket(false)
				}
				if relayed := bytes.Equal(ticket, vt); relayed == (password != "") {
					t.Fatalf("password %q: ticket relayed %v", password, relayed)
				}
			}
		}
	})
}

// FuzzMainWatcher feeds a main channel's server stream through WatchMain
// in both header modes and several read sizes: no panic, the bytes pass
// unchanged up to any error, and every read size sees the same reports
// and the same outcome. Seeds include QEMU 7.2's main channel streams
// (testdata/fuzz/FuzzMainWatcher/qemu-*, large pings shortened).
func FuzzMainWatcher(f *testing.F) {
	f.Add(mainStreamPing(true, 0xabcdef, testList, 300))
	f.Add(mainStreamPing(false, 1, []ChannelID{{ChannelMain, 0}, {ChannelPlayback, 0}}, 0))
	f.Add(AppendMessage(nil, true, 0, MsgMainInit, []byte{1}))
	f.Add(AppendMessage(nil, true, 0, MsgMainChannelsList, le.AppendUint32(nil, 0x7fffffff)))
	f.Add(le.AppendUint32(le.AppendUint16(nil, uint16(MsgMainInit)), 0xffffffff))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 256<<10 {
			return
		}
		for _, mini := range []bool{true, false} {
			out0, reports0, err0 := watchAll(data, mini, 0)
			if !bytes.HasPrefix(data, out0) {
				t.Fatal("bytes changed")
			}
			if err0 == nil && len(out0) != len(data) {
				t.Fatal("bytes lost")
			}
			if err0 != nil {
				checkError(t, err0)
			}
			for _, r := range reports0 {
				if len(r.Channels) > MaxChannels {
					t.Fatalf("%d channels", len(r.Channels))
				}
			}
			for _, chunk := range []int{1, 5, 19} {
				if chunk == 1 && len(data) > 4096 {
					continue
				}
				out, reports, err := watchAll(data, mini, chunk)
				if (err == nil) != (err0 == nil) || !reflect.DeepEqual(reports, reports0) || !bytes.HasPrefix(data, out) {
					t.Fatalf("chunk %d: %v %+v; whole reads: %v %+v", chunk, err, reports, err0, reports0)
				}
				if err == nil && !bytes.Equal(out, data) {
					t.Fatalf("chunk %d: bytes lost", chunk)
				}
			}
		}
	})
}
