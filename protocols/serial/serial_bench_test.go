package serial

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/tunnel"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

// BenchmarkPasteToTLSChardev measures what a paste toward a TLS chardev
// costs the sender (the proxy): CPU seconds per MiB written, with one TLS
// record per byte (ByteRecords, the QEMU 7.2 workaround) and with whole
// records, over loopback TCP; one record per byte sent one TCP write per
// record (a conn below TLS that cannot gather) or per paste (one from
// tunnel.DialTLS). The receiver drains ciphertext without
// decrypting, so the figure is the writer's alone (its thread's rusage).
func BenchmarkPasteToTLSChardev(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "pki")
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	client, err := tlscreds.Load(dir, tlscreds.RoleClient)
	if err != nil {
		b.Fatal(err)
	}
	server, err := tlscreds.Load(dir, tlscreds.RoleServer)
	if err != nil {
		b.Fatal(err)
	}
	plain := func(addr string) (net.Conn, error) {
		return tls.Dial("tcp", addr, client.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1"))
	}
	gathering := func(addr string) (net.Conn, error) {
		return tunnel.DialTLS(context.Background(), nil, addr, client.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1"))
	}
	for _, tc := range []struct {
		name string
		dial func(addr string) (net.Conn, error)
		wrap func(net.Conn) net.Conn
	}{
		{"byte-records", plain, ByteRecords}, // one write per record
		{"byte-records-gathered", gathering, ByteRecords},
		{"whole-records", plain, func(c net.Conn) net.Conn { return c }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			drained := make(chan error, 1)
			go func() {
				raw, err := ln.Accept()
				if err != nil {
					drained <- err
					return
				}
				defer raw.Close()
				tc := tls.Server(raw, server.ServerConfig(tlscreds.DefaultPolicy(), false))
				if err := tc.Handshake(); err != nil {
					drained <- err
					return
				}
				_, err = io.Copy(io.Discard, raw) // ciphertext, not decrypted
				drained <- err
			}()
			c, err := tc.dial(ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			w := tc.wrap(c)
			paste := make([]byte, 64<<10)
			for i := range paste {
				paste[i] = 'a' + byte(i%26)
			}
			b.SetBytes(int64(len(paste)))
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			cpu0 := threadCPU(b)
			b.ResetTimer()
			for range b.N {
				if _, err := w.Write(paste); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := threadCPU(b) - cpu0
			mib := float64(b.N) * float64(len(paste)) / (1 << 20)
			b.ReportMetric(cpu.Seconds()/mib, "cpu-s/MiB")
			c.Close()
			if err := <-drained; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// threadCPU is the calling (locked) thread's user and system time.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
