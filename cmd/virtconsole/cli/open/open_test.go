package open

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil/cmdtest"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtadmin"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtfake"
)

// run executes "open args..." with libvirt, if h is not nil, the fake
// hypervisor, and browser, if not nil, recording what --browser opens.
func run(t *testing.T, h *libvirtfake.Hypervisor, browser *[]string, args ...string) (string, string, error) {
	t.Helper()
	return cmdtest.Run(t, func(f *cmdutil.Factory) *cobra.Command {
		f.Getenv = func(string) string { return "" }
		if h != nil {
			f.Libvirt = func(ctx context.Context, uri string) (*libvirtadmin.Conn, error) {
				return libvirtadmin.Connect(ctx, f.LibvirtURI(uri), libvirtadmin.WithConnector(h.Connect))
			}
		}
		return NewCmdOpen(f, func(ctx context.Context, o *Options) error {
			o.OpenBrowser = func(_ context.Context, link string) error {
				*browser = append(*browser, link)
				return nil
			}
			return runOpen(ctx, f, o)
		})
	}, args...)
}

func tokenFile(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLinkFromTokenFile(t *testing.T) {
	t.Parallel()
	tf := tokenFile(t, "s3cret-Tok_1")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--proxy", "https://proxy.example:6443"}, "https://proxy.example:6443/vnc.html#token=s3cret-Tok_1"},
		{[]string{"--proxy", "wss://proxy.example:6443/websockify", "--type", "spice"}, "https://proxy.example:6443/spice.html#token=s3cret-Tok_1"},
		{[]string{"--proxy", "https://front.example/consoles/", "--type", "serial"}, "https://front.example/consoles/serial.html#token=s3cret-Tok_1"},
		{[]string{"--proxy", "https://front.example/consoles", "--type", "console"}, "https://front.example/consoles/serial.html#token=s3cret-Tok_1"},
		{[]string{"--proxy", "http://127.0.0.1:6080", "--proxy-insecure"}, "http://127.0.0.1:6080/vnc.html#token=s3cret-Tok_1"},
	} {
		var opened []string
		out, stderr, err := run(t, nil, &opened, append(c.args, "--token-file", tf)...)
		if err != nil || stderr != "" || out != c.want+"\n" {
			t.Errorf("open %v: %q %q %v; want %q", c.args, out, stderr, err, c.want)
		}
		u, err := url.Parse(strings.TrimSpace(out))
		if err != nil || u.RawQuery != "" || strings.Contains(u.Path, "s3cret") {
			t.Errorf("%s: the token is outside the fragment", out)
		}
		if len(opened) != 0 {
			t.Errorf("opened %v without --browser", opened)
		}
	}
}

func TestBrowser(t *testing.T) {
	t.Parallel()
	var opened []string
	out, _, err := run(t, nil, &opened, "--token-file", tokenFile(t, "tok"), "--proxy", "https://p.example", "--browser")
	if err != nil || out != "" || len(opened) != 1 || opened[0] != "https://p.example/vnc.html#token=tok" {
		t.Errorf("open --browser: printed %q, opened %v, %v", out, opened, err)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tf := tokenFile(t, "tok")
	for _, args := range [][]string{
		{"--token-file", tf},
		{"--token-file", tf, "--proxy", "http://p.example"},
		{"--token-file", tf, "--proxy", "https://p.example/?token=x"},
		{"--token-file", tf, "--proxy", "https://p.example", "--type", "rdp"},
		{"--token-file", tf, "--proxy", "ftp://p.example"},
		{"myvm", "--token-file", tf, "--proxy", "https://p.example"},
		{"--token-file", filepath.Join(t.TempDir(), "none"), "--proxy", "https://p.example"},
	} {
		var opened []string
		out, _, err := run(t, nil, &opened, args...)
		var fe *cmdutil.FlagError
		if !errors.As(err, &fe) || out != "" {
			t.Errorf("open %v: %q, %v; want a usage error", args, out, err)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("open %v: the error is not one line: %q", args, err)
		}
	}
	_, _, err := run(t, nil, new([]string), "--proxy", "https://p.example")
	if !errors.Is(err, cmdutil.ErrNoToken) {
		t.Errorf("open without a token: %v, want ErrNoToken", err)
	}
}

const devices = `<graphics type='vnc' port='5901' listen='127.0.0.1'/>` +
	`<graphics type='spice' tlsPort='5902' listen='127.0.0.1'/>` +
	`<serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555' tls='yes'/><alias name='serial0'/></serial>`

// TestDomainToken: with DOMAIN the token is the one libvirt holds now for
// the console of --type and --index, read as "vnc DOMAIN" reads it.
func TestDomainToken(t *testing.T) {
	t.Parallel()
	h := libvirtfake.New()
	h.Start(h.Define("web", devices))
	ctx := context.Background()
	c, err := libvirtadmin.Connect(ctx, "qemu:///system", libvirtadmin.WithConnector(h.Connect))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Enable(ctx, "web", nil, "", false); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		kind protocols.Kind
		page string
	}{{protocols.KindVNC, "vnc.html"}, {protocols.KindSPICE, "spice.html"}, {protocols.KindSerial, "serial.html"}} {
		tok, _, err := c.Token(ctx, "web", k.kind, 0)
		if err != nil {
			t.Fatal(err)
		}
		out, stderr, err := run(t, h, new([]string), "web", "-c", "qemu:///system", "--type", string(k.kind), "--proxy", "https://proxy.example:6443")
		want := "https://proxy.example:6443/" + k.page + "#token=" + tok + "\n"
		if err != nil || stderr != "" || out != want {
			t.Errorf("open web --type %s: %q %q %v; want %q", k.kind, out, stderr, err, want)
		}
	}
	_, _, err = run(t, h, new([]string), "web", "--type", "vnc", "--index", "1", "--proxy", "https://proxy.example:6443")
	if code := cmdutil.ExitCode(err); err == nil || code != cmdutil.ExitNotFound {
		t.Errorf("open web --index 1: %v (exit %d), want not found", err, code)
	}
	_, _, err = run(t, h, new([]string), "nosuchvm", "--proxy", "https://proxy.example:6443")
	if code := cmdutil.ExitCode(err); err == nil || code != cmdutil.ExitNotFound {
		t.Errorf("open nosuchvm: %v (exit %d), want not found", err, code)
	}
}

func TestHelp(t *testing.T) {
	cmdtest.CheckHelp(t, NewCmdOpen(cmdutil.NewFactory(cmdutil.Test(nil, nil, nil)), nil))
}
