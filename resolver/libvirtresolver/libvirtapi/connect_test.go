package libvirtapi

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// goLibvirtGoroutines counts the goroutines running go-libvirt's code.
func goLibvirtGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "digitalocean/go-libvirt") {
			n++
		}
	}
	return n
}

// TestConnectEndsWithContext: a libvirtd that accepts and never answers
// holds Connect only until its context ends, and leaves no goroutine of
// go-libvirt behind.
func TestConnectEndsWithContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	})
	u, err := transport.Parse("qemu+tcp://127.0.0.1/system", transport.DialerFunc(func() (net.Conn, error) {
		return net.Dial("tcp", ln.Addr().String())
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Connect(ctx, u, nil)
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrUnreachable) || !errors.Is(err, resolver.ErrUnavailable) {
		t.Fatalf("Connect to a silent libvirtd: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("Connect took %v after its context's 50ms", took)
	}
	deadline := time.Now().Add(2 * time.Second)
	for goLibvirtGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d go-libvirt goroutines left", goLibvirtGoroutines())
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConnectError(t *testing.T) {
	u, _ := transport.Parse("qemu+tls://hv1/system", nil)
	err := Unreachable(u, errors.New("tls: bad certificate\nmore"))
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, resolver.ErrUnavailable) ||
		err.Error() != "cannot connect to libvirt at qemu+tls://hv1/system: tls: bad certificate (libvirtd and this client must trust each other's certificates: check cacert.pem and clientcert.pem in the pkipath)" {
		t.Errorf("%v", err)
	}
}
