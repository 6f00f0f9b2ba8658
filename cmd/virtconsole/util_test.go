package main

import (
	"crypto/tls"

	"net"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
)

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func clientTLS(t testing.TB, caFile string) *tls.Config {
	t.Helper()
	c, err := tlscreds.LoadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return c.ClientConfig(tlscreds.DefaultPolicy(), "127.0.0.1")
}
