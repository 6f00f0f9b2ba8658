package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// TestSPICESecondViewerRefused: while a SPICE session is live, a second
// viewer of the console, with a token of its own, is refused with 409 and
// a reason that says why, and QEMU (which crashed on a second main
// channel) goes on; a view-only SPICE session is refused with 403.
func TestSPICESecondViewerRefused(t *testing.T) {
	const first, second = "SPICE-Share-First-5a1f", "SPICE-Share-Second-7c2e"
	b := startSPICEBed(t, "", map[string]string{first: "", second: ""})
	v := b.client(t, first)
	scriptedSession(t, v.port, "")

	dial := func(token, role string) error {
		h := http.Header{}
		h.Set("Authorization", "Bearer "+token)
		if role != "" {
			h.Set("X-Virtconsole-Role", role)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, err := wsconn.Dial(ctx, "wss://"+b.p.addr+"/websockify", h, &wsconn.DialOptions{TLSConfig: clientTLS(t, b.ca), Subprotocols: []string{"binary"}})
		if err == nil {
			ws.Close()
		}
		return err
	}
	var he *wsconn.HandshakeError
	if err := dial(second, ""); !errors.As(err, &he) || he.StatusCode != http.StatusConflict || !strings.Contains(he.Reason, "cannot be shared") {
		t.Fatalf("a second viewer of the live SPICE console: %v, want 409 saying it cannot be shared", err)
	}
	if err := dial(second, "view"); !errors.As(err, &he) || he.StatusCode != http.StatusForbidden {
		t.Fatalf("a view-only SPICE viewer: %v, want 403", err)
	}
	if !b.q.Alive() {
		t.Fatal("QEMU died")
	}
}
