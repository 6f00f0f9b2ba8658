package connect

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/virtconsole/virtconsole/cmd/virtconsole/cli/cmdutil"
	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/tunnel/tlscreds"
	"github.com/virtconsole/virtconsole/tunnel/wsconn"
)

// testFactory returns a Factory whose environment is env and whose
// streams are buffers (stdin empty).
func testFactory(t *testing.T, env map[string]string) *cmdutil.Factory {
	t.Helper()
	f := cmdutil.NewFactory(cmdutil.Test(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{}))
	f.Getenv = func(k string) string { return env[k] }
	return f
}

// command returns a command with the route flags for kind, as serial
// (text kinds) or vnc and spice register them, and its options.
func command(kind protocols.Kind) (*cobra.Command, *Options) {
	o := &Options{}
	cmd := &cobra.Command{Use: string(kind)}
	AddFlags(cmd, o, kind)
	return cmd, o
}

// check parses flags for a command of kind, runs Check with DOMAIN
// (domain, if not empty) and returns the options and Check's error.
func check(t *testing.T, f *cmdutil.Factory, kind protocols.Kind, domain string, flags ...string) (*Options, error) {
	t.Helper()
	cmd, o := command(kind)
	cmd.Flags().SetOutput(io.Discard)
	if err := cmd.Flags().Parse(flags); err != nil {
		t.Fatalf("parse %v: %v", flags, err)
	}
	var args []string
	if domain != "" {
		args = []string{domain}
	}
	return o, o.Check(f, cmd, args)
}

// resolveArgs checks and resolves a vnc route (spice with kind) from flags.
func resolveArgs(t *testing.T, f *cmdutil.Factory, kind *protocols.Kind, flags ...string) *Route {
	t.Helper()
	k := protocols.KindVNC
	if kind != nil {
		k = *kind
	}
	o, err := check(t, f, k, "", flags...)
	if err != nil {
		t.Fatalf("Check %v: %v", flags, err)
	}
	r, err := o.Resolve(context.Background(), f, k)
	if err != nil {
		t.Fatalf("Resolve %v: %v", flags, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestModes: each of the four modes from flags, the environment and
// DOMAIN, with the proxy URL normalised.
func TestModes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   protocols.Kind
		env    map[string]string
		domain string
		flags  []string
		mode   Mode
		proxy  string
	}{
		{"token file", protocols.KindSerial, nil, "", []string{"--proxy", "wss://p:6443", "--token-file", "t"}, ProxyToken, "wss://p:6443/websockify"},
		{"proxy from env", protocols.KindSerial, map[string]string{EnvProxy: "wss://env:1/x"}, "", nil, ProxyToken, "wss://env:1/x"},
		{"ws with --proxy-insecure", protocols.KindVNC, nil, "", []string{"--proxy", "ws://p:80", "--proxy-insecure"}, ProxyToken, "ws://p:80/websockify"},
		{"domain through proxy", protocols.KindSerial, nil, "vm", []string{"--proxy", "wss://p:6443"}, ProxyDomain, "wss://p:6443/websockify"},
		{"domain through env proxy", protocols.KindSPICE, map[string]string{EnvProxy: "wss://env:1"}, "vm", nil, ProxyDomain, "wss://env:1/websockify"},
		{"domain direct", protocols.KindSerial, nil, "vm", []string{"-c", "qemu:///system", "--index", "1"}, DirectDomain, ""},
		{"domain direct, graphics", protocols.KindVNC, nil, "vm", nil, DirectDomain, ""},
		{"target", protocols.KindVNC, nil, "", []string{"--target", "h:5900"}, DirectTarget, ""},
		{"target wins over env proxy", protocols.KindSPICE, map[string]string{EnvProxy: "wss://env:1"}, "", []string{"--target", "h:5900"}, DirectTarget, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := check(t, testFactory(t, tc.env), tc.kind, tc.domain, tc.flags...)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if o.Mode() != tc.mode || o.DomainName() != tc.domain {
				t.Errorf("mode %v domain %q, want %v %q", o.Mode(), o.DomainName(), tc.mode, tc.domain)
			}
			if tc.mode.Proxied() && o.Proxy.URL != tc.proxy {
				t.Errorf("proxy URL %q, want %q", o.Proxy.URL, tc.proxy)
			}
		})
	}
}

// TestModeConflicts: flag combinations that ask for no mode or two are
// usage errors that say what to give.
func TestModeConflicts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   protocols.Kind
		domain string
		flags  []string
		want   string
	}{
		{"nothing, serial", protocols.KindSerial, "", nil, "no console given: give DOMAIN (on a libvirt host) or --proxy URL (or VIRTCONSOLE_PROXY) with --token-file; see 'serial --help'"},
		{"nothing, vnc", protocols.KindVNC, "", nil, "no console given: give DOMAIN (on a libvirt host), --proxy URL (or VIRTCONSOLE_PROXY) with --token-file, or --target HOST:PORT; see 'vnc --help'"},
		{"domain and target", protocols.KindVNC, "vm", []string{"--target", "h:1"}, "give DOMAIN or --target, not both"},
		{"proxy and target", protocols.KindSPICE, "", []string{"--target", "h:1", "--proxy", "wss://p:1"}, "give --proxy or --target (direct mode), not both"},
		{"ws without opt-in", protocols.KindSerial, "", []string{"--proxy", "ws://p:1"}, `proxy URL "ws://p:1" is cleartext; use wss:// or pass --proxy-insecure`},
		{"https", protocols.KindSerial, "vm", []string{"--proxy", "https://p:1"}, `proxy URL "https://p:1": use wss://p:1 (the proxy's websocket URL)`},
		{"query", protocols.KindVNC, "", []string{"--proxy", "wss://p:1/?token=x"}, "proxy URL must not carry a query (tokens go in --token-file or VIRTCONSOLE_TOKEN)"},
		{"view, direct domain", protocols.KindSerial, "vm", []string{"--view"}, "--view needs the proxy (--proxy or VIRTCONSOLE_PROXY): a direct session cannot be view-only"},
		{"view, target", protocols.KindVNC, "", []string{"--view", "--target", "h:1"}, "--view needs the proxy (--proxy or VIRTCONSOLE_PROXY): a direct session cannot be view-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := check(t, testFactory(t, nil), tc.kind, tc.domain, tc.flags...)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Check: %v;\n want %s", err, tc.want)
			}
			if code := cmdutil.ExitCode(err); code != cmdutil.ExitUsage {
				t.Errorf("exit code %d, want %d", code, cmdutil.ExitUsage)
			}
			if o.Mode() != 0 {
				t.Errorf("mode %v after a refusal", o.Mode())
			}
		})
	}
}

// TestDeprecatedAliases: the former names still set the same options and
// say, on the flag set's output, which name to use now.
func TestDeprecatedAliases(t *testing.T) {
	cmd, o := command(protocols.KindSerial)
	var out bytes.Buffer
	cmd.Flags().SetOutput(&out)
	if err := cmd.Flags().Parse([]string{"--tls-dir", "/pki", "--insecure", "--connect-timeout", "3s"}); err != nil {
		t.Fatal(err)
	}
	if o.Proxy.TLSDir != "/pki" || !o.Proxy.Insecure || o.Proxy.Timeout != 3*time.Second {
		t.Errorf("aliases set %+v", o.Proxy)
	}
	for _, want := range []string{
		"Flag --tls-dir has been deprecated, use --proxy-tls-dir instead",
		"Flag --insecure has been deprecated, use --proxy-insecure instead",
		"Flag --connect-timeout has been deprecated, use --proxy-timeout instead",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in %q", want, out.String())
		}
	}
	for _, name := range []string{"tls-dir", "insecure", "connect-timeout"} {
		if f := cmd.Flags().Lookup(name); !f.Hidden {
			t.Errorf("--%s shows in help", name)
		}
	}
}

// TestFlagGroups: every client command has the same groups with the same
// flags, as far as its console kind has them.
func TestFlagGroups(t *testing.T) {
	want := map[protocols.Kind]map[string]string{}
	common := map[string]string{
		"proxy": cmdutil.GroupProxy, "token-file": cmdutil.GroupProxy, "ca-file": cmdutil.GroupProxy, "proxy-tls-dir": cmdutil.GroupProxy, "proxy-insecure": cmdutil.GroupProxy,
		"connect": cmdutil.GroupDomain, "index": cmdutil.GroupDomain,
		"connect-tls-dir": cmdutil.GroupDirect, "connect-insecure": cmdutil.GroupDirect,
		"tls-min-version": cmdutil.GroupTLS, "tls-cipher-suites": cmdutil.GroupTLS,
		"proxy-timeout": cmdutil.GroupTimeouts, "handshake-timeout": cmdutil.GroupTimeouts,
		"view":    cmdutil.GroupProxy,
		"profile": cmdutil.GroupProfile, "config": cmdutil.GroupProfile,
	}
	for _, k := range []protocols.Kind{protocols.KindSerial, protocols.KindVNC, protocols.KindSPICE} {
		want[k] = map[string]string{}
		for n, g := range common {
			want[k][n] = g
		}
	}
	want[protocols.KindSerial]["type"], want[protocols.KindSerial]["force"] = cmdutil.GroupDomain, cmdutil.GroupDomain
	for _, k := range []protocols.Kind{protocols.KindVNC, protocols.KindSPICE} {
		for _, n := range []string{"target", "tls-tunnel", "password-file"} {
			want[k][n] = cmdutil.GroupDirect
		}
	}
	for k, flags := range want {
		cmd, _ := command(k)
		got := map[string]string{}
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				got[f.Name] = cmdutil.FlagGroup(f)
			}
		})
		if len(got) != len(flags) {
			t.Errorf("%s: flags %v, want %v", k, got, flags)
		}
		for n, g := range flags {
			if got[n] != g {
				t.Errorf("%s --%s: group %q, want %q", k, n, got[n], g)
			}
		}
	}
}

// TestResolveToken: the token of a proxy route comes from the token file,
// standard input or the environment, once; none at all is refused.
func TestResolveToken(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(file, []byte("from-file\n"), 0o600)
	for _, tc := range []struct {
		name  string
		env   map[string]string
		stdin string
		flags []string
		want  string
	}{
		{"file", nil, "", []string{"--token-file", file}, "from-file"},
		{"stdin", nil, "from-stdin\nrest", []string{"--token-file", "-"}, "from-stdin"},
		{"env", map[string]string{EnvToken: " from-env "}, "", nil, "from-env"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testFactory(t, tc.env)
			f.IOStreams.In = strings.NewReader(tc.stdin)
			r := resolveArgs(t, f, nil, append([]string{"--proxy", "wss://p:1"}, tc.flags...)...)
			tok, _, err := r.proxy.tokens.get(context.Background())
			if err != nil || tok != tc.want {
				t.Fatalf("token %q, %v; want %q", tok, err, tc.want)
			}
		})
	}
	o, err := check(t, testFactory(t, nil), protocols.KindVNC, "", "--proxy", "wss://p:1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = o.Resolve(context.Background(), testFactory(t, nil), protocols.KindVNC)
	if !errors.Is(err, cmdutil.ErrNoToken) || cmdutil.ExitCode(err) != cmdutil.ExitRefused {
		t.Errorf("no token: %v (exit %d), want ErrNoToken, exit %d", err, cmdutil.ExitCode(err), cmdutil.ExitRefused)
	}
}

// TestResolveRefusals: what Resolve refuses before any connection, with
// the exit code of each.
func TestResolveRefusals(t *testing.T) {
	pki := newPKI(t)
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"insecure TLS version", []string{"--target", "h:1", "--connect-insecure", "--tls-min-version", "1.0"}, cmdutil.ExitUsage, "tls: minimum version 1.0 is insecure; use 1.2 or 1.3"},
		{"unknown cipher suite", []string{"--proxy", "wss://p:1", "--tls-cipher-suites", "NOPE"}, cmdutil.ExitUsage, `tls: unknown cipher suite "NOPE"`},
		{"direct without TLS", []string{"--target", "h:1"}, cmdutil.ExitUsage, "direct mode needs --connect-tls-dir DIR for TLS toward QEMU (or --connect-insecure for cleartext VNC)"},
		{"tunnel without TLS", []string{"--target", "h:1", "--connect-insecure", "--tls-tunnel"}, cmdutil.ExitUsage, "--tls-tunnel needs --connect-tls-dir DIR"},
		{"target without port", []string{"--target", "h", "--connect-insecure"}, cmdutil.ExitUsage, `--target "h": want HOST:PORT`},
		{"password file missing", []string{"--target", "h:1", "--connect-insecure", "--password-file", "/nonexistent"}, cmdutil.ExitUsage, "password file: "},
		{"broken QEMU credentials", []string{"--target", "h:1", "--connect-tls-dir", t.TempDir()}, cmdutil.ExitTLS, "ca-cert.pem"},
		{"broken CA file", []string{"--proxy", "wss://p:1", "--ca-file", filepath.Join(t.TempDir(), "ca.pem")}, cmdutil.ExitTLS, "ca.pem"},
		{"proxy dir without client cert", []string{"--proxy", "wss://p:1", "--proxy-tls-dir", filepath.Dir(pki.caOnly)}, cmdutil.ExitTLS, "client-cert.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testFactory(t, map[string]string{EnvToken: "tok"})
			o, err := check(t, f, protocols.KindVNC, "", tc.flags...)
			if err == nil {
				_, err = o.Resolve(context.Background(), f, protocols.KindVNC)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if code := cmdutil.ExitCode(err); code != tc.code {
				t.Errorf("exit code %d, want %d (%v)", code, tc.code, err)
			}
		})
	}
}

// testPKI is a CA with server and client certificates for 127.0.0.1, and
// a directory with the CA alone.
type testPKI struct {
	dir    string
	caOnly string // ca-cert.pem in a directory of its own
	creds  *tlscreds.Creds
}

func newPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	if err := tlscreds.Create(dir, []string{"127.0.0.1"}, tlscreds.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	creds, err := tlscreds.Load(dir, tlscreds.RoleServer)
	if err != nil {
		t.Fatal(err)
	}
	only := filepath.Join(t.TempDir(), "ca-cert.pem")
	b, _ := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	os.WriteFile(only, b, 0o600)
	return testPKI{dir: dir, caOnly: only, creds: creds}
}

// tlsServer accepts TLS connections (at most TLS 1.2) and echoes.
func tlsServer(t *testing.T, p testPKI) string {
	t.Helper()
	cfg := p.creds.ServerConfig(tlscreds.DefaultPolicy(), false)
	cfg.MaxVersion = tls.VersionTLS12
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

// TestDirectDial: one dial for every direct route: the TLS policy and the
// credentials apply to QEMU's leg, and failures say which console and why,
// with their exit codes.
func TestDirectDial(t *testing.T) {
	p := newPKI(t)
	addr := tlsServer(t, p)
	spice := protocols.KindSPICE
	f := testFactory(t, nil)

	// SPICE's TLS port: TLS from the first byte with --connect-tls-dir.
	r := resolveArgs(t, f, &spice, "--target", addr, "--connect-tls-dir", p.dir)
	c, err := r.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if _, ok := c.Conn.(*tls.Conn); !ok {
		t.Errorf("conn %T, want TLS", c.Conn)
	}
	c.Close()

	silent := silentAddr(t)
	closed := closedAddr(t)
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		want  string
	}{
		{"TLS policy", []string{"--target", addr, "--connect-tls-dir", p.dir, "--tls-min-version", "1.3"}, cmdutil.ExitTLS, "QEMU at " + addr + ": "},
		{"unreachable", []string{"--target", closed, "--connect-tls-dir", p.dir}, cmdutil.ExitUnreachable, "QEMU at " + closed + " unreachable: "},
		{"timeout", []string{"--target", silent, "--connect-tls-dir", p.dir, "--handshake-timeout", "100ms"}, cmdutil.ExitUnreachable, "QEMU at " + silent + " unreachable: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := resolveArgs(t, f, &spice, tc.flags...)
			_, err := r.Dial(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want %q…", err, tc.want)
			}
			if code := cmdutil.ExitCode(err); code != tc.code {
				t.Errorf("exit code %d, want %d (%v)", code, tc.code, err)
			}
		})
	}
}

// silentAddr accepts connections and never answers.
func silentAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return l.Addr().String()
}

// TestProxyDial: through the proxy the token travels in the Authorization
// header, the TLS policy applies to the proxy's leg, and the proxy's
// answers become exit codes.
func TestProxyDial(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer good":
			c, err := wsconn.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			io.Copy(c, c)
			c.Close()
		case "Bearer busy":
			http.Error(w, "console unreachable", http.StatusBadGateway)
		case "Bearer odd":
			http.Error(w, "teapot", http.StatusTeapot)
		default:
			http.Error(w, "unknown token", http.StatusNotFound)
		}
	}))
	srv.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	writeCert(t, ca, srv.Certificate().Raw)
	url := "wss://" + srv.Listener.Addr().String()

	f := testFactory(t, map[string]string{EnvToken: "good"})
	r := resolveArgs(t, f, nil, "--proxy", url, "--ca-file", ca)
	c, err := r.Dial(context.Background())
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	viewer, up, err := c.Attach(context.Background(), nil)
	if err != nil || viewer != nil || up != c {
		t.Fatalf("Attach through the proxy: %v %v %v, want the conns unchanged", viewer, up, err)
	}
	c.Write([]byte("ping"))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q, %v", b, err)
	}
	c.Close()

	for _, tc := range []struct {
		token string
		flags []string
		code  int
		want  string
	}{
		{"nope", nil, cmdutil.ExitRefused, "refused the console (HTTP 404): unknown token"},
		{"busy", nil, cmdutil.ExitUnreachable, "refused the console (HTTP 502): console unreachable"},
		{"odd", nil, cmdutil.ExitFailure, "(HTTP 418): teapot"},
		{"good", []string{"--tls-min-version", "1.3"}, cmdutil.ExitTLS, "TLS version"},
	} {
		t.Run(tc.token, func(t *testing.T) {
			f := testFactory(t, map[string]string{EnvToken: tc.token})
			r := resolveArgs(t, f, nil, append([]string{"--proxy", url, "--ca-file", ca}, tc.flags...)...)
			_, err := r.Dial(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v, want %q", err, tc.want)
			}
			if code := cmdutil.ExitCode(err); code != tc.code {
				t.Errorf("exit code %d, want %d (%v)", code, tc.code, err)
			}
		})
	}
}

func writeCert(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
