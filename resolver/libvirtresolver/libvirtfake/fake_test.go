package libvirtfake

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
)

const ns = "http://example.com/ns"

func dial(t *testing.T, h *Hypervisor) *Conn {
	t.Helper()
	l, err := h.Connect(context.Background(), "test:///")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Disconnect() })
	return l.(*Conn)
}

func hasCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return v
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	panic("unreachable")
}

// TestDomains: lifecycle, XML, metadata live and config, and the events
// they raise.
func TestDomains(t *testing.T) {
	h := New()
	c := dial(t, h)
	lc, err := c.LifecycleEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	md, err := c.SubscribeEvents(context.Background(), libvirt.DomainEventIDMetadataChange, nil)
	if err != nil {
		t.Fatal(err)
	}

	d := h.Define("web", `<graphics type='vnc' port='5901'/>`)
	if ev := recv(t, lc); ev.Dom.UUID != d.UUID || ev.Event != int32(libvirt.DomainEventDefined) {
		t.Fatalf("define: event %+v", ev)
	}
	if doms, _, _ := c.ConnectListAllDomains(1, libvirt.ConnectListDomainsActive); len(doms) != 0 {
		t.Fatalf("active domains before start: %v", doms)
	}
	if err := c.DomainSetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{"<x a='1'/>"},
		libvirt.OptString{"k"}, libvirt.OptString{ns}, libvirt.DomainAffectLive); !hasCode(err, libvirt.ErrOperationInvalid) {
		t.Fatalf("live metadata of a stopped domain: %v", err)
	}
	if err := c.DomainSetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{"<x a='1'/>"},
		libvirt.OptString{"k"}, libvirt.OptString{ns}, libvirt.DomainAffectConfig); err != nil {
		t.Fatal(err)
	}
	recv(t, md)

	d = h.Start(d)
	if ev := recv(t, lc); ev.Event != int32(libvirt.DomainEventStarted) || d.ID <= 0 {
		t.Fatalf("start: event %+v, domain %+v", ev, d)
	}
	x, err := c.DomainGetXMLDesc(d, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"id='", "<name>web</name>", `<x xmlns="` + ns + `" a='1'/>`, "port='5901'"} {
		if !strings.Contains(x, want) {
			t.Errorf("live XML lacks %q:\n%s", want, x)
		}
	}
	if got, err := c.DomainGetMetadata(d, int32(libvirt.DomainMetadataElement), libvirt.OptString{ns}, libvirt.DomainAffectLive); err != nil || got != "<x a='1'/>" {
		t.Errorf("live metadata after start: %q, %v", got, err)
	}
	if got, err := c.DomainLookupByName("web"); err != nil || got != d {
		t.Errorf("lookup by name: %+v, %v", got, err)
	}

	h.Destroy(d)
	if ev := recv(t, lc); ev.Event != int32(libvirt.DomainEventStopped) {
		t.Fatalf("destroy: event %+v", ev)
	}
	if got, _ := c.DomainLookupByUUID(d.UUID); got.ID != -1 {
		t.Errorf("stopped domain has ID %d", got.ID)
	}
	if x, _ := c.DomainGetXMLDesc(d, 0); strings.Contains(x, "id='") {
		t.Errorf("stopped domain's XML has an ID:\n%s", x)
	}
	h.Undefine(d)
	if _, err := c.DomainLookupByUUID(d.UUID); !hasCode(err, libvirt.ErrNoDomain) {
		t.Errorf("undefined domain: %v", err)
	}
}

// TestSecrets: define, value, lookup, undefine.
func TestSecrets(t *testing.T) {
	h := New()
	c := dial(t, h)
	s, err := c.SecretDefineXML("<secret ephemeral='no' private='no'><description>d</description></secret>", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SecretGetValue(s, 0); !hasCode(err, libvirt.ErrNoSecret) {
		t.Errorf("value before set: %v", err)
	}
	if err := c.SecretSetValue(s, []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	h.SetSecretValue(s.UUID, "v2")
	if v, err := c.SecretGetValue(s, 0); err != nil || string(v) != "v2" {
		t.Errorf("value: %q, %v", v, err)
	}
	if x, _ := c.SecretGetXMLDesc(s, 0); !strings.Contains(x, "<description>d</description>") {
		t.Errorf("xml: %s", x)
	}
	if err := c.SecretUndefine(s); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SecretLookupByUUID(s.UUID); !hasCode(err, libvirt.ErrNoSecret) {
		t.Errorf("lookup after undefine: %v", err)
	}
}

// TestCut: cutting connections closes their event channels, fires
// Disconnected and fails calls, including one blocked in the hook; a
// refusing hypervisor accepts no connection.
func TestCut(t *testing.T) {
	h := New()
	c := dial(t, h)
	lc, _ := c.LifecycleEvents(context.Background())
	entered, release := make(chan struct{}), make(chan struct{})
	h.SetHook(func(m string) error {
		if m == "DomainLookupByName" {
			close(entered)
			<-release
		}
		return nil
	})
	done := make(chan error)
	go func() {
		_, err := c.DomainLookupByName("x")
		done <- err
	}()
	<-entered
	h.CutAll()
	close(release)
	if err := <-done; !errors.Is(err, libvirt.ErrInterrupted) {
		t.Errorf("call interrupted by the cut: %v", err)
	}
	if _, ok := <-lc; ok {
		t.Error("event channel open after the cut")
	}
	select {
	case <-c.Disconnected():
	default:
		t.Error("Disconnected not closed")
	}
	if _, err := c.DomainLookupByName("x"); err == nil {
		t.Error("call on a cut connection succeeded")
	}
	if h.Conns() != 0 {
		t.Errorf("%d connections after the cut", h.Conns())
	}
	h.Refuse(errors.New("down"))
	if _, err := h.Connect(context.Background(), ""); err == nil {
		t.Error("refusing hypervisor connected")
	}
}
