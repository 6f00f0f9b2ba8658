package wsconn

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

func TestCloseWithReason(t *testing.T) {
	long := "console closed unexpectedly:\nread: " + strings.Repeat("é", 100)
	for _, tc := range []struct {
		name    string
		code    int
		reason  string
		wantEOF bool
	}{
		{"internal error", CloseInternalError, long, false},
		{"going away", CloseGoingAway, "proxy shutting down", true},
		{"handshake failed", CloseHandshakeFailed, "vnc: no common security type", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, false, nil, nil)
			if err := p.server.CloseWithReason(tc.code, tc.reason); err != nil {
				t.Fatal(err)
			}
			p.server.Close() // the first close decides the code
			_, err := readAll(p.client, 16)
			if tc.wantEOF != (err == nil) {
				t.Fatalf("Read: %v, want io.EOF: %v", err, tc.wantEOF)
			}
			pc := p.client.PeerClose()
			if pc == nil || pc.Code != tc.code {
				t.Fatalf("PeerClose %v, want code %d", pc, tc.code)
			}
			if !tc.wantEOF {
				var ce *CloseError
				if !errors.As(err, &ce) || *ce != *pc {
					t.Fatalf("Read: %v, want %v", err, pc)
				}
			}
			if len(pc.Reason) > MaxCloseReason || !utf8.ValidString(pc.Reason) || strings.ContainsAny(pc.Reason, "\r\n") {
				t.Fatalf("reason %q: want one valid line of at most %d bytes", pc.Reason, MaxCloseReason)
			}
			want := tc.reason
			if len(want) > MaxCloseReason {
				want = "console closed unexpectedly: read: é"
			}
			if !strings.HasPrefix(pc.Reason, want) {
				t.Fatalf("reason %q, want it to start with %q", pc.Reason, want)
			}
		})
	}
}

func TestPeerCloseNilBeforeClose(t *testing.T) {
	p := newPair(t, false, nil, nil)
	if pc := p.client.PeerClose(); pc != nil {
		t.Fatalf("PeerClose before any close: %v", pc)
	}
	p.server.Close()
	if _, err := readAll(p.client, 16); err != nil {
		t.Fatal(err)
	}
	if pc := p.client.PeerClose(); pc == nil || pc.Code != CloseNormal || pc.Reason != "" {
		t.Fatalf("PeerClose after Close: %v, want 1000 and no reason", pc)
	}
}

// TestWriteTimeout: a peer that never reads but keeps pinging cannot hold
// a Write: it fails within the write timeout, and the session can end.
func TestWriteTimeout(t *testing.T) {
	const deadPeer = 300 * time.Millisecond
	conns := make(chan net.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := Upgrade(w, r, &Options{KeepAlive: 50 * time.Millisecond, DeadPeerTimeout: deadPeer})
		if err != nil {
			t.Errorf("Upgrade: %v", err)
			close(conns)
			return
		}
		conns <- c
	}))
	defer srv.Close()
	peer, _, err := websocket.DefaultDialer.Dial(wsURL(srv), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, ok := <-conns
	if !ok {
		t.FailNow()
	}
	defer c.Close()

	// The peer pings (which counts as alive) and never reads.
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if peer.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)) != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-pinged }()
	read := goErr(func() error { _, err := io.Copy(io.Discard, c); return err })

	wrote := goErr(func() error {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return err
			}
		}
	})
	err = wait(t, wrote, "the stuck Write to time out")
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %v, want a timeout", err)
	}
	c.Close()
	wait(t, read, "the Read to end")
}

// readCloseFrame reads unmasked server frames from c until a close frame
// and returns its code and reason.
func readCloseFrame(t *testing.T, c net.Conn) (int, string) {
	t.Helper()
	for {
		var h [2]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		n := int(h[1] & 0x7f)
		if n >= 126 {
			t.Fatalf("unexpected long control frame")
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(c, payload); err != nil {
			t.Fatalf("reading frames: %v", err)
		}
		if h[0]&0x0f == websocket.CloseMessage {
			if n < 2 {
				return 1005, ""
			}
			return int(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
	}
}
