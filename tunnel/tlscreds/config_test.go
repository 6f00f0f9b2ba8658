package tlscreds

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		min     string
		suites  []string
		want    Policy
		wantErr string
	}{
		{min: "", want: Policy{MinVersion: tls.VersionTLS12}},
		{min: "1.2", want: Policy{MinVersion: tls.VersionTLS12}},
		{min: "1.3", want: Policy{MinVersion: tls.VersionTLS13}},
		{min: "TLS1.3", want: Policy{MinVersion: tls.VersionTLS13}},
		{min: "1.1", wantErr: "tls: minimum version 1.1 is insecure; use 1.2 or 1.3"},
		{min: "2", wantErr: `tls: unknown minimum version "2"; use 1.2 or 1.3`},
		{
			min:    "1.2",
			suites: []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
			want:   Policy{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		},
		{suites: []string{"TLS_RSA_WITH_RC4_128_SHA"}, wantErr: "tls: cipher suite TLS_RSA_WITH_RC4_128_SHA is insecure; choose from TLS_"},
		{suites: []string{"TLS_NOPE"}, wantErr: `tls: unknown cipher suite "TLS_NOPE"; choose from TLS_`},
	} {
		got, err := ParsePolicy(tt.min, tt.suites)
		if tt.wantErr != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("ParsePolicy(%q, %q) error = %v; want %q", tt.min, tt.suites, err, tt.wantErr)
			}
			if _, ok := errors.AsType[*PolicyError](err); !ok {
				t.Errorf("ParsePolicy(%q, %q) error %T, want a *PolicyError", tt.min, tt.suites, err)
			}
			continue
		}
		if err != nil || got.MinVersion != tt.want.MinVersion || len(got.CipherSuites) != len(tt.want.CipherSuites) {
			t.Errorf("ParsePolicy(%q, %q) = %+v, %v; want %+v", tt.min, tt.suites, got, err, tt.want)
			continue
		}
		for i := range got.CipherSuites {
			if got.CipherSuites[i] != tt.want.CipherSuites[i] {
				t.Errorf("ParsePolicy(%q, %q) = %+v; want %+v", tt.min, tt.suites, got, tt.want)
			}
		}
	}
	if DefaultPolicy().MinVersion != tls.VersionTLS12 || DefaultPolicy().CipherSuites != nil {
		t.Errorf("DefaultPolicy = %+v", DefaultPolicy())
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	now := time.Now()
	if err := Create(dir, []string{"hv1.example", "127.0.0.1", "::1"}, CreateOptions{Now: now, Validity: 48 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode: %v %v", fi.Mode(), err)
	}
	for _, f := range CreatedFiles {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o644)
		if strings.HasSuffix(f, "-key.pem") {
			want = 0o600
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v; want %v", f, fi.Mode().Perm(), want)
		}
	}
	for _, role := range []Role{RoleServer, RoleClient} {
		c, err := Load(dir, role)
		if err != nil {
			t.Fatalf("Load(%s) of created dir: %v", role, err)
		}
		leaf := c.Cert.Leaf
		if got := leaf.NotAfter.Sub(now); got < 47*time.Hour || got > 49*time.Hour {
			t.Errorf("%s validity ends in %v", role, got)
		}
		if leaf.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			t.Errorf("%s lacks keyEncipherment (older QEMU requires it)", role)
		}
		if role == RoleServer {
			if leaf.Subject.CommonName != "hv1.example" || len(leaf.DNSNames) != 1 || len(leaf.IPAddresses) != 2 {
				t.Errorf("server SANs: CN %q DNS %q IP %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
			}
		}
	}

	// Existing files are refused, and replaced with Force (with the key
	// mode restored even if it had been loosened).
	err := Create(dir, []string{"hv1.example"}, CreateOptions{})
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "already holds ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem") {
		t.Errorf("Create over existing files: %v", err)
	}
	key := filepath.Join(dir, "server-key.pem")
	os.Chmod(key, 0o644)
	if err := Create(dir, []string{"hv1.example"}, CreateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("forced key mode %v", fi.Mode().Perm())
	}
	if _, err := Load(dir, RoleServer); err != nil {
		t.Error(err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left: %q", leftovers)
	}

	for _, hosts := range [][]string{nil, {""}, {"host:22"}, {"https://x"}} {
		if err := Create(t.TempDir(), hosts, CreateOptions{}); err == nil {
			t.Errorf("Create accepted hosts %q", hosts)
		}
	}
}

// handshake runs one TLS connection on loopback. The server writes "ok"
// after its handshake; the client reads it, so that a refusal sent after
// the client's TLS 1.3 handshake is seen too.
func handshake(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error, state tls.ConnectionState, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		if err := tc.Handshake(); err != nil {
			done <- err
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- err
	}()

	addr = ln.Addr().String()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, cli)
	clientErr = tc.Handshake()
	if clientErr == nil {
		buf := make([]byte, 2)
		_, clientErr = io.ReadFull(tc, buf)
		state = tc.ConnectionState()
	}
	raw.Close()
	return <-done, clientErr, state, addr
}

// created makes a cert dir with Create for 127.0.0.1 and localhost.
func created(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := Create(dir, []string{"127.0.0.1", "localhost"}, CreateOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustLoad(t *testing.T, dir string, role Role) *Creds {
	t.Helper()
	c, err := Load(dir, role)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantExplained(t *testing.T, err error, c *Creds, peer, want string) {
	t.Helper()
	got := ExplainHandshakeError(err, c, peer)
	var he *HandshakeError
	if !errors.As(got, &he) || !strings.Contains(got.Error(), want) || strings.Contains(got.Error(), "\n") {
		t.Errorf("ExplainHandshakeError(%v) =\n %q\nwant it to contain\n %q", err, got, want)
	}
	if he != nil && !errors.Is(got, err) {
		t.Errorf("explained error does not wrap the original")
	}
}

func TestHandshakeMutualTLS(t *testing.T) {
	t.Parallel()
	dir := created(t)
	srv, cli := mustLoad(t, dir, RoleServer), mustLoad(t, dir, RoleClient)
	p := DefaultPolicy()
	serr, cerr, state, addr := handshake(t, srv.ServerConfig(p, true), cli.ClientConfig(p, "127.0.0.1"))
	if serr != nil || cerr != nil {
		t.Fatalf("server: %v; client: %v", serr, cerr)
	}
	if state.Version != tls.VersionTLS13 {
		t.Errorf("version %x", state.Version)
	}
	// A host:port server name verifies as its host.
	if serr, cerr, _, _ = handshake(t, srv.ServerConfig(p, true), cli.ClientConfig(p, addr)); serr != nil || cerr != nil {
		t.Fatalf("with host:port: server: %v; client: %v", serr, cerr)
	}
	// The TLS 1.2 suites of the policy are used.
	p12, err := ParsePolicy("1.2", []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"})
	if err != nil {
		t.Fatal(err)
	}
	ccfg := cli.ClientConfig(DefaultPolicy(), "localhost")
	ccfg.MaxVersion = tls.VersionTLS12
	serr, cerr, state, _ = handshake(t, srv.ServerConfig(p12, true), ccfg)
	if serr != nil || cerr != nil || state.Version != tls.VersionTLS12 || state.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
		t.Fatalf("TLS 1.2 policy: server %v, client %v, state %x/%x", serr, cerr, state.Version, state.CipherSuite)
	}
}

func TestHandshakeClientWithoutCertRefused(t *testing.T) {
	t.Parallel()
	dir := created(t)
	srv := mustLoad(t, dir, RoleServer)
	caOnly, err := LoadCAFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()

	serr, cerr, _, addr := handshake(t, srv.ServerConfig(p, true), caOnly.ClientConfig(p, "127.0.0.1"))
	if serr == nil || cerr == nil {
		t.Fatalf("client without certificate accepted: server %v, client %v", serr, cerr)
	}
	wantExplained(t, cerr, caOnly, "proxy at "+addr, "tls: proxy at "+addr+" requires a client certificate")
	wantExplained(t, serr, srv, "client at 127.0.0.1", "tls: client at 127.0.0.1 presented no client certificate; it needs a client certificate issued by ca-cert.pem in "+dir)

	// TLS 1.2 refuses with a handshake_failure alert.
	ccfg := caOnly.ClientConfig(p, "127.0.0.1")
	ccfg.MaxVersion = tls.VersionTLS12
	serr, cerr, _, _ = handshake(t, srv.ServerConfig(p, true), ccfg)
	if serr == nil || cerr == nil {
		t.Fatalf("TLS 1.2 client without certificate accepted: server %v, client %v", serr, cerr)
	}
	wantExplained(t, cerr, caOnly, "QEMU", "tls: QEMU refused the handshake (alert: handshake failure): it may require a client certificate")

	// Without requireClientCert it is fine.
	if serr, cerr, _, _ = handshake(t, srv.ServerConfig(p, false), caOnly.ClientConfig(p, "127.0.0.1")); serr != nil || cerr != nil {
		t.Fatalf("server: %v; client: %v", serr, cerr)
	}
}

func TestHandshakeWrongCA(t *testing.T) {
	t.Parallel()
	dir1, dir2 := created(t), created(t)
	srv := mustLoad(t, dir1, RoleServer)
	other := mustLoad(t, dir2, RoleClient)
	p := DefaultPolicy()

	// The client trusts another CA: it refuses the server.
	serr, cerr, _, addr := handshake(t, srv.ServerConfig(p, true), other.ClientConfig(p, "127.0.0.1"))
	if cerr == nil {
		t.Fatal("client accepted a server from another CA")
	}
	peer := "QEMU at " + addr
	wantExplained(t, cerr, other, peer, "tls: "+peer+` presented a certificate not signed by ca-cert.pem in `+dir2+` (issued by `+strconv.Quote(srv.Cert.Leaf.Issuer.String())+`); use the CA that signed its server certificate`)
	wantExplained(t, serr, srv, "client", "tls: client refused our certificate server-cert.pem in "+dir1+" (alert: bad certificate); the client must trust the CA that issued it")

	// The client presents a certificate from another CA: the server
	// refuses it.
	mixed := &Creds{Dir: dir2, Role: RoleClient, CAFile: srv.CAFile, CAs: srv.CAs, Cert: other.Cert}
	serr, cerr, _, _ = handshake(t, srv.ServerConfig(p, true), mixed.ClientConfig(p, "127.0.0.1"))
	if serr == nil || cerr == nil {
		t.Fatalf("server accepted a client from another CA: server %v, client %v", serr, cerr)
	}
	wantExplained(t, serr, srv, "client at x", "tls: client at x presented a certificate not signed by ca-cert.pem in "+dir1)
	wantExplained(t, serr, srv, "client at x", "issue its client certificate from that CA")
	wantExplained(t, cerr, mixed, "proxy", "tls: proxy refused our certificate client-cert.pem in "+dir2+" (alert: unknown certificate authority); use a client certificate issued by a CA that proxy trusts")
}

func TestHandshakeTLS13Only(t *testing.T) {
	t.Parallel()
	dir := created(t)
	srv, cli := mustLoad(t, dir, RoleServer), mustLoad(t, dir, RoleClient)
	p13, err := ParsePolicy("1.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := srv.ServerConfig(p13, true); cfg.MinVersion != tls.VersionTLS13 {
		t.Fatalf("ServerConfig MinVersion %x", cfg.MinVersion)
	}

	ccfg := cli.ClientConfig(DefaultPolicy(), "127.0.0.1")
	ccfg.MaxVersion = tls.VersionTLS12
	serr, cerr, _, _ := handshake(t, srv.ServerConfig(p13, true), ccfg)
	if serr == nil || cerr == nil {
		t.Fatal("a TLS 1.3-only server accepted TLS 1.2")
	}
	wantExplained(t, cerr, cli, "proxy", "tls: proxy accepts no TLS version or cipher suite this side offers (alert: protocol version not supported)")
	wantExplained(t, serr, srv, "client", "tls: client and this side have no TLS version in common")

	// A TLS 1.3-only client against a TLS 1.2 server.
	scfg := srv.ServerConfig(DefaultPolicy(), true)
	scfg.MaxVersion = tls.VersionTLS12
	_, cerr, _, _ = handshake(t, scfg, cli.ClientConfig(p13, "127.0.0.1"))
	if cerr == nil {
		t.Fatal("a TLS 1.3-only client accepted TLS 1.2")
	}
	if cli.ClientConfig(p13, "x").MinVersion != tls.VersionTLS13 {
		t.Error("ClientConfig ignores the policy")
	}

	serr, cerr, state, _ := handshake(t, srv.ServerConfig(p13, true), cli.ClientConfig(p13, "127.0.0.1"))
	if serr != nil || cerr != nil || state.Version != tls.VersionTLS13 {
		t.Fatalf("TLS 1.3: server %v, client %v, version %x", serr, cerr, state.Version)
	}
}

func TestExplainHostnameAndCleartext(t *testing.T) {
	t.Parallel()
	dir := created(t)
	srv, cli := mustLoad(t, dir, RoleServer), mustLoad(t, dir, RoleClient)
	p := DefaultPolicy()
	_, cerr, _, _ := handshake(t, srv.ServerConfig(p, true), cli.ClientConfig(p, "hv9.example:5901"))
	if cerr == nil {
		t.Fatal("wrong host name accepted")
	}
	wantExplained(t, cerr, cli, "QEMU", "tls: QEMU presented a certificate for localhost, 127.0.0.1, not hv9.example; connect to one of those names")

	// A peer that does not speak TLS (QEMU's VNC greeting).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("RFB 003.008\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	err = tls.Client(raw, cli.ClientConfig(p, "127.0.0.1")).Handshake()
	wantExplained(t, err, cli, "QEMU", "tls: QEMU does not speak TLS on this port")
}

func TestExplainPassesThrough(t *testing.T) {
	t.Parallel()
	if ExplainHandshakeError(nil, nil, "x") != nil {
		t.Error("nil error explained")
	}
	boom := errors.New("boom")
	if got := ExplainHandshakeError(boom, nil, "x"); got != boom {
		t.Errorf("unknown error changed: %v", got)
	}
	if got := ExplainHandshakeError(io.EOF, nil, "x"); got != io.EOF {
		t.Errorf("EOF changed: %v", got)
	}
	he := &HandshakeError{Msg: "tls: done", Err: boom}
	if got := ExplainHandshakeError(he, nil, "x"); got != he {
		t.Errorf("explained twice: %v", got)
	}
	// A nil *Creds gives client configs on the system roots.
	cfg := (*Creds)(nil).ClientConfig(DefaultPolicy(), "[::1]:5901")
	if cfg.RootCAs != nil || cfg.ServerName != "::1" || cfg.Certificates != nil {
		t.Errorf("nil Creds ClientConfig = %+v", cfg)
	}
	wantExplained(t, x509.UnknownAuthorityError{}, nil, "proxy", "tls: proxy presented a certificate not signed by the system's trusted CAs")
}

// TestLoadClient: a client dir with certificates presents them; a dir
// with only ca-cert.pem connects to a server that does not ask for a
// client certificate, and fails at once, naming the files to add, with
// one that requires it (as QEMU with verify-peer=on does).
func TestLoadClient(t *testing.T) {
	dir := created(t)
	p := DefaultPolicy()
	srv := mustLoad(t, dir, RoleServer)

	full, err := LoadClient(dir)
	if err != nil || full.Cert == nil {
		t.Fatalf("LoadClient of a full dir: %+v, %v", full, err)
	}
	if serr, cerr, _, _ := handshake(t, srv.ServerConfig(p, true), full.ClientConfig(p, "127.0.0.1")); serr != nil || cerr != nil {
		t.Fatalf("with a client certificate: server %v, client %v", serr, cerr)
	}

	caOnly := t.TempDir()
	ca, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(caOnly, CACertFile), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadClient(caOnly)
	if err != nil || c.Cert != nil {
		t.Fatalf("LoadClient of a CA-only dir: %+v, %v", c, err)
	}
	if serr, cerr, _, _ := handshake(t, srv.ServerConfig(p, false), c.ClientConfig(p, "127.0.0.1")); serr != nil || cerr != nil {
		t.Fatalf("CA only, server without client auth: server %v, client %v", serr, cerr)
	}
	_, cerr, _, _ := handshake(t, srv.ServerConfig(p, true), c.ClientConfig(p, "127.0.0.1"))
	var he *HandshakeError
	want := "tls: 127.0.0.1 requires a client certificate, and " + caOnly + " has none; add client-cert.pem and client-key.pem issued by a CA it trusts"
	if !errors.As(cerr, &he) || he.Error() != want {
		t.Fatalf("CA only, server requiring client certs: %v\nwant %s", cerr, want)
	}

	// A CA file alone (--ca-file) keeps Go's default: an empty
	// certificate, and the server's verdict.
	plain, err := LoadCAFile(filepath.Join(caOnly, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, cerr, _, _ := handshake(t, srv.ServerConfig(p, true), plain.ClientConfig(p, "127.0.0.1")); cerr == nil || errors.As(cerr, &he) {
		t.Fatalf("LoadCAFile toward a server requiring client certs: %v", cerr)
	}

	if _, err := LoadClient(t.TempDir()); err == nil || !strings.Contains(err.Error(), CACertFile) {
		t.Fatalf("LoadClient of an empty dir: %v", err)
	}
}
