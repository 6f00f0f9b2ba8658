package transport

import (
	"fmt"
	"testing"
)

func TestParseURI(t *testing.T) {
	for _, tt := range []struct{ uri, host, typ string }{
		{"", "127.0.0.1", "*dialers.Local"},
		{"qemu:///system", "127.0.0.1", "*dialers.Local"},
		{"qemu+unix:///system?socket=/tmp/s", "127.0.0.1", "*dialers.Local"},
		{"qemu+tcp://hv1:1234/system", "hv1", "*dialers.Remote"},
		{"qemu+tls://hv2/system", "hv2", "*dialers.TLS"},
		{"qemu://hv3/system", "hv3", "*dialers.TLS"},
		{"qemu+ssh://root@hv4/system", "hv4", "*transport.sshDialer"},
	} {
		u, err := Parse(tt.uri, nil)
		if err != nil {
			t.Errorf("%s: %v", tt.uri, err)
			continue
		}
		if u.Host != tt.host || typeName(u.Dialer) != tt.typ {
			t.Errorf("%s: host %q dialer %s", tt.uri, u.Host, typeName(u.Dialer))
		}
	}
	// The ssh transport's parameters.
	for uri, want := range map[string]sshDialer{
		"qemu+ssh://root@hv4/system": {addr: "hv4:22", user: "root", socket: remoteSocket},
		"qemu+ssh://op@[2001:db8::1]:2222/system?keyfile=/k&known_hosts=/kh&socket=/s&no_verify=1": {
			addr: "[2001:db8::1]:2222", user: "op", keyFile: "/k", knownHosts: "/kh", socket: "/s", noVerify: true},
	} {
		u, err := Parse(uri, nil)
		if err != nil {
			t.Fatal(err)
		}
		got := *u.Dialer.(*sshDialer)
		got.timeout = 0
		if got != want {
			t.Errorf("%s: %+v, want %+v", uri, got, want)
		}
	}
	for _, bad := range []string{"qemu+carrier-pigeon://x/system", "not a uri", "qemu+tls://h/system?no_verify=maybe"} {
		if _, err := Parse(bad, nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
