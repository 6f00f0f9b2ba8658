package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols/qemutest"
	"github.com/virtconsole/virtconsole/resolver"
)

// TestVNCViewerBurst: a burst of viewers opening one VNC console at once
// all get in, through the proxy and in direct mode. QEMU listens with a
// backlog of 1: connections beyond it can land in SYN cookies and QEMU
// never sends its RFB version on them, which used to fail a few viewers
// of every ten after the whole handshake timeout.
func TestVNCViewerBurst(t *testing.T) {
	qemutest.Require(t)
	const viewers = 20
	dir := pki(t)
	_, addr := qemutest.StartVNC(t, qemutest.VNCOptions{TLSDir: dir, VerifyPeer: true})
	tokens := writeTokens(t, map[string]resolver.Console{"burst": {Type: "vnc", Address: addr}})
	p := startDaemon(t, "server", "proxy", "--listen", "127.0.0.1:0", "--tls-dir", dir, "--connect-tls-dir", dir,
		"--tokens", tokens, "--max-sessions", "100")

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"proxy", []string{"--proxy", "wss://" + p.addr, "--ca-file", filepath.Join(dir, "ca-cert.pem"), "--token-file", writeToken(t, "burst")}},
		{"direct", []string{"--target", addr, "--connect-tls-dir", dir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := startVNC(t, tc.args...)
			// Three bursts: one can be lucky.
			for round := range 3 {
				ok, errs := viewerBurst(viewers, v.port)
				t.Logf("round %d: %d of %d viewers reached ServerInit", round, ok, viewers)
				if ok != viewers {
					t.Fatalf("round %d: %d of %d viewers reached ServerInit; first failures: %v", round, ok, viewers, errs)
				}
			}
		})
	}
}

// viewerBurst opens n RFB viewers at the local port at once, waits until
// each has reached ServerInit or failed, closes them all and returns how
// many got in and the first few failures.
func viewerBurst(n, port int) (ok int, errs []error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
		start = make(chan struct{})
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 10*time.Second)
			if err == nil {
				err = tryRFB(c)
			}
			mu.Lock()
			defer mu.Unlock()
			if c != nil {
				conns = append(conns, c)
			}
			if err == nil {
				ok++
			} else if len(errs) < 3 {
				errs = append(errs, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	for _, c := range conns {
		c.Close()
	}
	return ok, errs
}

// tryRFB is rfbHandshake for many goroutines: it reports instead of
// failing the test. Its deadline outlasts the handshake timeouts (15 s).
func tryRFB(c net.Conn) error {
	c.SetDeadline(time.Now().Add(40 * time.Second))
	defer c.SetDeadline(time.Time{})
	reason := func() error {
		var l [4]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return err
		}
		b := make([]byte, min(binary.BigEndian.Uint32(l[:]), 4096))
		io.ReadFull(c, b)
		return fmt.Errorf("refused: %s", b)
	}
	ver := make([]byte, 12)
	if _, err := io.ReadFull(c, ver); err != nil {
		return fmt.Errorf("version: %w", err)
	}
	c.Write([]byte("RFB 003.008\n"))
	n := make([]byte, 1)
	if _, err := io.ReadFull(c, n); err != nil {
		return fmt.Errorf("security types: %w", err)
	}
	if n[0] == 0 {
		return reason()
	}
	io.ReadFull(c, make([]byte, n[0]))
	c.Write([]byte{1})
	res := make([]byte, 4)
	if _, err := io.ReadFull(c, res); err != nil {
		return fmt.Errorf("security result: %w", err)
	}
	if binary.BigEndian.Uint32(res) != 0 {
		return reason()
	}
	c.Write([]byte{1}) // ClientInit: shared
	init := make([]byte, 24)
	if _, err := io.ReadFull(c, init); err != nil {
		return fmt.Errorf("server init: %w", err)
	}
	if binary.BigEndian.Uint16(init[0:]) == 0 {
		return errors.New("server init: zero width")
	}
	return nil
}
