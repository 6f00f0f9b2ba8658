package qemutest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SPICEOptions configures StartSPICE.
type SPICEOptions struct {
	// TLSDir, if set, opens a TLS port too, with the credentials there
	// (x509-dir: ca-cert.pem, server-cert.pem, server-key.pem).
	TLSDir string
	// Password, if set, turns ticketing on with this password (given to
	// QEMU as a secret object read from a file, not on its command line);
	// without it ticketing is off (disable-ticketing=on) and QEMU accepts
	// any well-formed ticket.
	Password string
	// Args are more QEMU arguments (GraphicsGuest.Args boots the tiny
	// Linux guest).
	Args []string
}

// StartSPICE starts a diskless q35 machine with a QXL display and a SPICE
// server on 127.0.0.1. The server has a cleartext port (plainAddr) and,
// with o.TLSDir, a TLS port (tlsAddr, otherwise ""). QEMU 7.2 accepts
// both on the same -spice option; every channel may use either port.
func StartSPICE(t testing.TB, o SPICEOptions) (q *QEMU, plainAddr, tlsAddr string) {
	t.Helper()
	port := FreePort(t)
	opts := []string{"addr=127.0.0.1", "port=" + strconv.Itoa(port)}
	var args []string
	if o.TLSDir != "" {
		tlsPort := FreePort(t)
		for tlsPort == port {
			tlsPort = FreePort(t)
		}
		opts = append(opts, "tls-port="+strconv.Itoa(tlsPort), "x509-dir="+qemuOptValue(o.TLSDir))
		tlsAddr = "127.0.0.1:" + strconv.Itoa(tlsPort)
	}
	if o.Password != "" {
		// password-secret (QEMU 7.0+) replaces the deprecated password=.
		file := filepath.Join(t.TempDir(), "spice-password")
		if err := os.WriteFile(file, []byte(o.Password), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-object", "secret,id=spicepw,file="+qemuOptValue(file))
		opts = append(opts, "password-secret=spicepw")
	} else {
		opts = append(opts, "disable-ticketing=on")
	}
	args = append(args, "-machine", "q35", "-vga", "qxl", "-spice", strings.Join(opts, ","))
	q = Start(t, append(args, o.Args...)...)
	plainAddr = "127.0.0.1:" + strconv.Itoa(port)
	q.waitListening(plainAddr)
	if tlsAddr != "" {
		q.waitListening(tlsAddr)
	}
	return q, plainAddr, tlsAddr
}

// qemuOptValue escapes a value for QEMU's key=value,... option syntax,
// where a literal comma is written twice.
func qemuOptValue(v string) string { return strings.ReplaceAll(v, ",", ",,") }
