package connect

import (
	"net"
	"reflect"
	"testing"
)

func TestViewerCommand(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5999}
	noDisplay := func(string) string { return "" }
	for _, tc := range []struct {
		viewer, scheme string
		want           []string
	}{
		{"none", "vnc", nil},
		{"", "vnc", nil},
		{"auto", "vnc", nil}, // no display: no viewer
		{"remote-viewer", "vnc", []string{"remote-viewer", "vnc://127.0.0.1:5999"}},
		{"remote-viewer", "spice", []string{"remote-viewer", "spice://127.0.0.1:5999"}},
		{"vncviewer", "vnc", []string{"vncviewer", "127.0.0.1::5999"}},
		{"myviewer --host {host} --port={port} {uri}", "vnc", []string{"myviewer", "--host", "127.0.0.1", "--port=5999", "vnc://127.0.0.1:5999"}},
	} {
		o := &LocalOptions{Viewer: tc.viewer}
		got, err := o.ViewerCommand(tc.scheme, addr, noDisplay)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q/%s: %q, %v; want %q", tc.viewer, tc.scheme, got, err, tc.want)
		}
	}
	if _, err := (&LocalOptions{Viewer: "vncviewer"}).ViewerCommand("spice", addr, noDisplay); err == nil {
		t.Error("vncviewer accepted for SPICE")
	}
}

func TestListenPolicy(t *testing.T) {
	if _, err := (&LocalOptions{Address: "0.0.0.0"}).Listen(); err == nil {
		t.Fatal("non-loopback address accepted without --allow-remote")
	}
	l, err := (&LocalOptions{Address: "127.0.0.1"}).Listen()
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := (&LocalOptions{Address: "127.0.0.1", Port: 70000}).Listen(); err == nil {
		t.Fatal("port 70000 accepted")
	}
}

func TestProxyURL(t *testing.T) {
	for in, want := range map[string]string{
		"wss://h:1":        "wss://h:1/websockify",
		"https://h:1/":     "", // the websocket URL is wss://
		"http://h:1":       "",
		"wss://h:1/x/ws":   "wss://h:1/x/ws",
		"ws://h:1":         "", // needs --insecure
		"wss://h:1/?token": "",
		"ftp://h":          "",
	} {
		got, err := ProxyURL(in, false)
		if (want == "") != (err != nil) || got != want {
			t.Errorf("ProxyURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := ProxyURL("ws://h:1", true); err != nil || got != "ws://h:1/websockify" {
		t.Errorf("ws with insecure: %q %v", got, err)
	}
	for _, tc := range []struct {
		in       string
		insecure bool
		want     string
	}{
		{"https://proxy.example:6443", false, `proxy URL "https://proxy.example:6443": use wss://proxy.example:6443 (the proxy's websocket URL)`},
		{"http://h:1/ws", false, `proxy URL "http://h:1/ws": use ws://h:1/ws (the proxy's websocket URL) with --proxy-insecure`},
		{"http://h:1", true, `proxy URL "http://h:1": use ws://h:1 (the proxy's websocket URL)`},
	} {
		if _, err := ProxyURL(tc.in, tc.insecure); err == nil || err.Error() != tc.want {
			t.Errorf("ProxyURL(%q, %v): %v; want %s", tc.in, tc.insecure, err, tc.want)
		}
	}
}
