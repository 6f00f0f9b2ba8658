package spice

import (
	"fmt"
	"net"
	"slices"
)

// MainInfo is what WatchMain learnt from the main channel so far.
type MainInfo struct {
	// SessionID is SPICE_MSG_MAIN_INIT's session_id: the connection id
	// every other channel of the session links with.
	SessionID    uint32
	HasSessionID bool
	// Channels is SPICE_MSG_MAIN_CHANNELS_LIST: the channels QEMU offers
	// this session, which the viewer then links.
	Channels    []ChannelID
	HasChannels bool
}

// maxWatchedMessages bounds how many messages WatchMain looks at: a
// viewer that never asks for the channel list (no
// SPICE_MSGC_MAIN_ATTACH_CHANNELS) must not keep it watching forever.
// spice-server sends a handful (init, name, uuid, pings of the network
// test, mouse mode, agent messages) before the list.
const maxWatchedMessages = 1024

// WatchMain returns a conn that reads from qemu, a main channel just
// after Forward, and reports to report what its first messages say:
// once after SPICE_MSG_MAIN_INIT (the session id) and once after
// SPICE_MSG_MAIN_CHANNELS_LIST (the channel list), each time with
// everything learnt so far. miniHeader is Info.MiniHeader: whether the
// messages have the mini or the full data header.
//
// report runs in Read, before the bytes that complete the message are
// returned, so that whoever reads the conn (and passes the bytes on to
// the viewer) cannot act on a message before report has seen it. Other
// messages are counted past without being copied; the two that are read
// whole are bounded to MaxInspectedMessage. Once both are seen (or after
// maxWatchedMessages messages), Read is qemu's Read and nothing more. A
// malformed or oversized message makes Read fail with an error that says
// so, ending the session rather than letting it run unobserved.
//
// Reads, writes and the other methods go to qemu; the returned conn has
// CloseWrite exactly when qemu has.
func WatchMain(qemu net.Conn, miniHeader bool, report func(MainInfo)) net.Conn {
	w := &mainWatcher{Conn: qemu, report: report, hdrLen: fullHeaderLen}
	if miniHeader {
		w.hdrLen = miniHeaderLen
	}
	if cw, ok := qemu.(closeWriter); ok {
		return &mainWatcherCW{mainWatcher: w, cw: cw}
	}
	return w
}

type closeWriter interface{ CloseWrite() error }

type mainWatcherCW struct {
	*mainWatcher
	cw closeWriter
}

func (w *mainWatcherCW) CloseWrite() error { return w.cw.CloseWrite() }

// mainWatcher parses the message stream read through it. Only the
// goroutine calling Read touches its state.
type mainWatcher struct {
	net.Conn
	report func(MainInfo)
	info   MainInfo
	done   bool
	err    error // sticky parse error

	hdrLen int
	hdr    [maxHeaderLen]byte
	hdrN   int     // header bytes collected
	typ    MsgType // current message, once its header is complete
	remain uint32  // body bytes of the current message still to come
	inBody bool
	body   []byte // the body of an inspected message, else nil
	msgs   int
}

func (w *mainWatcher) Read(p []byte) (int, error) {
	if w.done {
		return w.Conn.Read(p)
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.Conn.Read(p)
	if n > 0 {
		if perr := w.feed(p[:n]); perr != nil {
			w.err = perr
			return 0, perr
		}
	}
	return n, err
}

// feed parses b, the next bytes of the stream.
func (w *mainWatcher) feed(b []byte) error {
	for len(b) > 0 && !w.done {
		if !w.inBody {
			n := copy(w.hdr[w.hdrN:w.hdrLen], b)
			w.hdrN += n
			b = b[n:]
			if w.hdrN < w.hdrLen {
				return nil
			}
			if err := w.startMessage(); err != nil {
				return err
			}
			if w.remain == 0 {
				if err := w.endMessage(); err != nil {
					return err
				}
			}
			continue
		}
		n := int(min(uint32(len(b)), w.remain))
		if w.body != nil {
			w.body = append(w.body, b[:n]...)
		}
		w.remain -= uint32(n)
		b = b[n:]
		if w.remain == 0 {
			if err := w.endMessage(); err != nil {
				return err
			}
		}
	}
	return nil
}

// startMessage decodes a complete header: SpiceMiniDataHeader (u16 type,
// u32 size) or SpiceDataHeader (u64 serial, u16 type, u32 size, u32
// sub_list).
func (w *mainWatcher) startMessage() error {
	h := w.hdr[:w.hdrLen]
	if w.hdrLen == fullHeaderLen {
		h = h[8:] // skip the serial; sub_list follows size
	}
	w.typ = MsgType(le.Uint16(h))
	w.remain = le.Uint32(h[2:])
	w.inBody = true
	w.msgs++
	if w.typ == MsgMainInit || w.typ == MsgMainChannelsList {
		if w.remain > MaxInspectedMessage {
			return fmt.Errorf("spice: QEMU sent a %s of %d bytes on the main channel; virtconsole reads at most %d", w.typ.mainName(), w.remain, MaxInspectedMessage)
		}
		w.body = make([]byte, 0, w.remain)
	}
	return nil
}

// endMessage finishes the current message: decodes it if inspected,
// reports, and readies for the next header.
func (w *mainWatcher) endMessage() error {
	typ, body := w.typ, w.body
	w.inBody, w.hdrN, w.body = false, 0, nil
	changed := false
	switch {
	case body == nil:
	case typ == MsgMainInit:
		id, err := parseMainInit(body)
		if err != nil {
			return err
		}
		w.info.SessionID, w.info.HasSessionID = id, true
		changed = true
	case typ == MsgMainChannelsList:
		list, err := parseChannelsList(body)
		if err != nil {
			return err
		}
		w.info.Channels, w.info.HasChannels = list, true
		changed = true
	}
	if w.info.HasSessionID && w.info.HasChannels || w.msgs >= maxWatchedMessages {
		w.done = true
	}
	if changed && w.report != nil {
		info := w.info
		info.Channels = slices.Clone(info.Channels)
		w.report(info)
	}
	return nil
}

// parseMainInit returns SPICE_MSG_MAIN_INIT's session_id, its first field
// (spice.proto MainChannel init: eight u32, 32 bytes).
func parseMainInit(b []byte) (uint32, error) {
	if len(b) < 4 {
		return 0, fmt.Errorf("spice: QEMU sent a SPICE_MSG_MAIN_INIT of %d bytes, too short for a session id", len(b))
	}
	return le.Uint32(b), nil
}

// parseChannelsList decodes SPICE_MSG_MAIN_CHANNELS_LIST (spice.proto
// channels_list: u32 num_of_channels, then that many {u8 type, u8 id}).
func parseChannelsList(b []byte) ([]ChannelID, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("spice: QEMU sent a SPICE_MSG_MAIN_CHANNELS_LIST of %d bytes, too short for a count", len(b))
	}
	n := le.Uint32(b)
	if n > MaxChannels {
		return nil, fmt.Errorf("spice: QEMU listed %d channels; virtconsole accepts at most %d", n, MaxChannels)
	}
	if uint64(len(b)-4) < 2*uint64(n) {
		return nil, fmt.Errorf("spice: QEMU sent a SPICE_MSG_MAIN_CHANNELS_LIST of %d bytes for %d channels", len(b), n)
	}
	list := make([]ChannelID, n)
	for i := range list {
		list[i] = ChannelID{Type: ChannelType(b[4+2*i]), ID: b[5+2*i]}
	}
	return list, nil
}

func (t MsgType) mainName() string {
	switch t {
	case MsgMainInit:
		return "SPICE_MSG_MAIN_INIT"
	case MsgMainChannelsList:
		return "SPICE_MSG_MAIN_CHANNELS_LIST"
	}
	return fmt.Sprintf("message of type %d", uint16(t))
}
