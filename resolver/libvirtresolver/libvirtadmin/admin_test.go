package libvirtadmin

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/domainxml"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtfake"
)

// These tests run the admin operations against libvirtfake; the
// libvirtresolver package's libvirt_test.go runs them against a real
// libvirtd.

const devices = `<graphics type='vnc' port='5901' listen='0.0.0.0'/>` +
	`<serial type='pty'><target port='0'/><alias name='serial0'/></serial>` +
	`<serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555' tls='yes'/><alias name='serial1'/></serial>`

func connect(t *testing.T, h *libvirtfake.Hypervisor) *Conn {
	t.Helper()
	c, err := Connect(context.Background(), "qemu:///system", WithConnector(h.Connect))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func find(t *testing.T, cons []Console, kind protocols.Kind, index int) Console {
	t.Helper()
	for _, c := range cons {
		if c.Kind == kind && c.Index == index {
			return c
		}
	}
	t.Fatalf("no %s %d in %+v", kind, index, cons)
	return Console{}
}

// TestEnable: every console gets a secret and a metadata entry, live and
// in the config; enabling again keeps the secrets and updates host and
// insecure; Consoles and Token read it all back with the targets.
func TestEnable(t *testing.T) {
	h := libvirtfake.New()
	dom := h.Start(h.Define("web", devices))
	c := connect(t, h)
	ctx := context.Background()

	enabled, err := c.Enable(ctx, "web", nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(enabled) != 3 || h.Secrets() != 3 {
		t.Fatalf("enabled %d consoles with %d secrets, want 3 and 3", len(enabled), h.Secrets())
	}
	for _, live := range []bool{true, false} {
		if m := h.Metadata(dom, domainxml.Namespace, live); strings.Count(m, "<console ") != 3 {
			t.Errorf("metadata (live %v): %s", live, m)
		}
	}

	again, err := c.Enable(ctx, libvirtapi.UUIDString(dom.UUID), []protocols.Kind{protocols.KindSerial}, "hv.example", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 2 || h.Secrets() != 3 {
		t.Fatalf("enable serials again: %d consoles, %d secrets", len(again), h.Secrets())
	}
	if got, was := find(t, again, protocols.KindSerial, 1), find(t, enabled, protocols.KindSerial, 1); got.Secret != was.Secret {
		t.Errorf("enable again changed the secret %s -> %s", was.Secret, got.Secret)
	}

	cons, err := c.Consoles(ctx, "web", false)
	if err != nil {
		t.Fatal(err)
	}
	vnc := find(t, cons, protocols.KindVNC, 0)
	if vnc.Address != "127.0.0.1:5901" || vnc.Insecure || vnc.Token != "" || vnc.Target.Dial != nil {
		t.Errorf("vnc: %+v", vnc)
	}
	tcp := find(t, cons, protocols.KindSerial, 1)
	if tcp.Address != "hv.example:4555" || tcp.Target.Insecure || !tcp.Insecure || tcp.Backend != "tcp 127.0.0.1:4555 tls" {
		t.Errorf("tcp serial: %+v", tcp)
	}
	pty := find(t, cons, protocols.KindSerial, 0)
	if pty.Address != "qemu:///system#"+libvirtapi.UUIDString(dom.UUID)+"/serial0" || pty.Device != "serial0" ||
		pty.Target.Dial == nil || pty.Target.Address != "libvirt qemu:///system domain web serial0" {
		t.Errorf("pty serial: %+v", pty)
	}

	tok, con, err := c.Token(ctx, "web", protocols.KindVNC, 0)
	if err != nil || len(tok) != 43 || con.Token != tok {
		t.Errorf("Token: %q, %+v, %v", tok, con, err)
	}
	if d, err := c.Lookup(ctx, strconv.Itoa(int(dom.ID))); err != nil || d.Name != "web" || !d.Running {
		t.Errorf("Lookup by ID: %+v, %v", d, err)
	}
}

// TestEnableStopped: a stopped persistent domain gets the metadata in its
// config only, and its consoles have no target.
func TestEnableStopped(t *testing.T) {
	h := libvirtfake.New()
	dom := h.Define("web", devices)
	c := connect(t, h)
	cons, err := c.Enable(context.Background(), "web", nil, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if h.Metadata(dom, domainxml.Namespace, false) == "" {
		t.Error("no metadata in the config")
	}
	if con := find(t, cons, protocols.KindVNC, 0); con.Address != "" || con.Problem != "domain not running" {
		t.Errorf("console of a stopped domain: %+v", con)
	}
}

// TestEnableRollback: when the metadata cannot be written, the secrets
// Enable created are removed again.
func TestEnableRollback(t *testing.T) {
	h := libvirtfake.New()
	dom := h.Start(h.Define("web", devices))
	c := connect(t, h)
	h.SetHook(func(m string) error {
		if m == "DomainSetMetadata" {
			return libvirt.Error{Code: uint32(libvirt.ErrOperationFailed), Message: "operation failed: no"}
		}
		return nil
	})
	_, err := c.Enable(context.Background(), "web", nil, "", false)
	if err == nil || !strings.Contains(err.Error(), "write the console metadata of domain web") {
		t.Fatalf("Enable: %v", err)
	}
	if h.Secrets() != 0 || h.Metadata(dom, domainxml.Namespace, true) != "" {
		t.Errorf("left behind: %d secrets, metadata %q", h.Secrets(), h.Metadata(dom, domainxml.Namespace, true))
	}
}

// TestDisableRotate: rotate renews the values and keeps the secrets;
// disable removes metadata and secrets, those a failed run left behind
// too, and can run twice.
func TestDisableRotate(t *testing.T) {
	h := libvirtfake.New()
	dom := h.Start(h.Define("web", devices))
	c := connect(t, h)
	ctx := context.Background()
	if _, err := c.Rotate(ctx, "web"); !errors.Is(err, ErrNotEnabled) {
		t.Errorf("rotate before enable: %v", err)
	}
	if _, err := c.Enable(ctx, "web", nil, "", false); err != nil {
		t.Fatal(err)
	}
	before, _ := c.Consoles(ctx, "web", true)
	rotated, err := c.Rotate(ctx, "web")
	if err != nil || len(rotated) != 3 {
		t.Fatalf("rotate: %d, %v", len(rotated), err)
	}
	after, _ := c.Consoles(ctx, "web", true)
	for i := range after {
		if after[i].Secret != before[i].Secret || after[i].Token == before[i].Token {
			t.Errorf("%s %d: secret %s -> %s, token changed %v", after[i].Kind, after[i].Index,
				before[i].Secret, after[i].Secret, after[i].Token != before[i].Token)
		}
	}

	// A secret a failed run left behind, named after the domain.
	left, err := c.newSecret(domainxml.Device{Kind: protocols.KindSPICE}, libvirtapi.UUIDString(dom.UUID))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Disable(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if h.Secrets() != 0 || h.Metadata(dom, domainxml.Namespace, true) != "" || h.Metadata(dom, domainxml.Namespace, false) != "" {
		t.Errorf("after disable: %d secrets (left one %v), metadata %q", h.Secrets(), left.UUID, h.Metadata(dom, domainxml.Namespace, true))
	}
	if err := c.Disable(ctx, "web"); err != nil {
		t.Errorf("disable again: %v", err)
	}
	if _, _, err := c.Token(ctx, "web", protocols.KindVNC, 0); !errors.Is(err, ErrNotEnabled) {
		t.Errorf("token after disable: %v", err)
	}
}

// TestErrors: each failure wraps its sentinel and is one line.
func TestErrors(t *testing.T) {
	h := libvirtfake.New()
	h.Start(h.Define("bare", ""))
	h.Start(h.Define("vnc", `<graphics type='vnc' port='5901'/>`))
	c := connect(t, h)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"no consoles", second(c.Enable(ctx, "bare", nil, "", false)), ErrNoConsoles},
		{"no spice", second(c.Enable(ctx, "vnc", []protocols.Kind{protocols.KindSPICE}, "", false)), ErrNoConsoles},
		{"unknown name", second(c.Enable(ctx, "nope", nil, "", false)), libvirtapi.ErrDomainNotFound},
		{"unknown UUID", second(c.Consoles(ctx, "00000000-0000-0000-0000-000000000001", false)), libvirtapi.ErrDomainNotFound},
		{"unknown ID", second(c.Lookup(ctx, "99999")), libvirtapi.ErrDomainNotFound},
		{"not enabled", third(c.Token(ctx, "vnc", protocols.KindVNC, 0)), ErrNotEnabled},
		{"no such device", third(c.Token(ctx, "vnc", protocols.KindVNC, 1)), ErrNoConsoles},
	} {
		if !errors.Is(tc.err, tc.want) || strings.ContainsAny(fmtErr(tc.err), "\r\n") {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}

	h.Refuse(errors.New("connection refused"))
	_, err := Connect(ctx, "qemu+tcp://hv1/system", WithConnector(h.Connect))
	if !errors.Is(err, libvirtapi.ErrUnreachable) || !errors.Is(err, resolver.ErrUnavailable) || !strings.Contains(err.Error(), "qemu+tcp://hv1/system") {
		t.Errorf("refused: %v", err)
	}
	if _, err := Connect(ctx, "qemu+bogus://x/system"); err == nil {
		t.Error("bogus transport accepted")
	}
}

func second[T any](_ T, err error) error        { return err }
func third[T, U any](_ T, _ U, err error) error { return err }

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
