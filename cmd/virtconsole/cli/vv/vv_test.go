package vv_test

import (
	"crypto/tls"
	"encoding/pem"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/vv"
	"github.com/virtconsole/virtconsole/tunnel/proxy"
)

// TestVVDomain: "vv DOMAIN" puts the token libvirt holds for the
// domain's SPICE console into the proxy URL (base64url password), and the
// CA and subject the gateway reports into ca and host-subject.
func TestVVDomain(t *testing.T) {
	h, tok := cmdtest.SPICEDomain(t, "myvm")

	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = &proxy.ConnectGateway{Proxy: &proxy.Proxy{},
		TLSConfig: func() *tls.Config { return srv.TLS },
		CA:        func() []byte { return []byte("CA PEM\n") }}
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)

	out, stderr, err := cmdtest.Run(t, func(f *cmdutil.Factory) *cobra.Command {
		f.Getenv = func(string) string { return "" }
		f.Libvirt = cmdtest.Libvirt(h)
		return vv.NewCmdVV(f, nil)
	}, "myvm", "-c", "qemu:///system", "--gateway", srv.URL, "--ca-file", caFile)
	if err != nil {
		t.Fatalf("vv myvm: %v: %s", err, stderr)
	}
	u, _ := url.Parse(srv.URL)
	want := "[virt-viewer]\ntype=spice\nhost=console.virtconsole.invalid\ntls-port=5901\n" +
		"proxy=https://virtconsole:" + proxy.EncodeConnectToken(tok) + "@" + u.Host + "\n" +
		"ca=CA PEM\\n\nhost-subject=O=Acme Co\nsecure-channels=all\ndelete-this-file=1\n" +
		"title=myvm (release the cursor: shift+f12)\ntoggle-fullscreen=shift+f11\nrelease-cursor=shift+f12\nsecure-attention=ctrl+alt+end\n"
	if out != want {
		t.Errorf("vv myvm wrote:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(out, "password") {
		t.Error("a password in the .vv file")
	}

	// The gateway and its CA from a client profile: the same file. The
	// token is single-use no more here (the fake's secret is unchanged).
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("[profiles.lab]\ngateway = \""+srv.URL+"\"\nca-file = \""+caFile+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err = cmdtest.Run(t, func(f *cmdutil.Factory) *cobra.Command {
		f.Getenv = func(string) string { return "" }
		f.Libvirt = cmdtest.Libvirt(h)
		return vv.NewCmdVV(f, nil)
	}, "myvm", "-c", "qemu:///system", "--config", cfg, "--profile", "lab")
	if err != nil || out != want {
		t.Errorf("vv myvm --profile lab: %v %s; wrote:\n%s\nwant:\n%s", err, stderr, out, want)
	}
}
