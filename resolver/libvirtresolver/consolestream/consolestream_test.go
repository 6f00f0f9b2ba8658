package consolestream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	libvirt "github.com/digitalocean/go-libvirt"

	"github.com/virtconsole/virtconsole/protocols"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/libvirtapi"
	"github.com/virtconsole/virtconsole/resolver/libvirtresolver/transport"
)

// Unit tests of the pure parts; TestConsoleStream in libvirtresolver
// talks to a real guest's console through a real libvirtd.

func TestXDR(t *testing.T) {
	var e xdrEncoder
	e.string("web")
	e.optString("serial0")
	e.int32(-1)
	want := []byte{0, 0, 0, 3, 'w', 'e', 'b', 0, 0, 0, 0, 1, 0, 0, 0, 7, 's', 'e', 'r', 'i', 'a', 'l', '0', 0, 0xff, 0xff, 0xff, 0xff}
	if !bytes.Equal(e.b, want) {
		t.Errorf("encoded % x\nwant    % x", e.b, want)
	}

	ints, err := decodeInts([]byte{0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2})
	if err != nil || len(ints) != 2 || ints[1] != authPolkit {
		t.Errorf("decodeInts: %v, %v", ints, err)
	}
	if _, err := decodeInts([]byte{0, 0, 0, 9, 0}); err == nil {
		t.Error("short array accepted")
	}

	// remote_error: code, domain, then the message as a remote_string.
	msg := []byte("Active console session exists for this domain")
	b := binary.BigEndian.AppendUint32(nil, uint32(libvirt.ErrOperationFailed))
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	var le libvirt.Error
	if err := decodeError(b); !errors.As(err, &le) || le.Code != uint32(libvirt.ErrOperationFailed) || le.Message != string(msg) {
		t.Errorf("decodeError: %v", err)
	}
}

func TestOpenErr(t *testing.T) {
	u, _ := transport.Parse("qemu:///system", nil)
	c := &conn{u: u}
	dom := libvirt.Domain{Name: "web"}
	for _, tc := range []struct {
		err  libvirt.Error
		want error
	}{
		{libvirt.Error{Code: uint32(libvirt.ErrOperationFailed), Message: "operation failed: Active console session exists for this domain"}, ErrConsoleBusy},
		{libvirt.Error{Code: uint32(libvirt.ErrInternalError), Message: "internal error: cannot find character device serial7"}, ErrNoConsoleDevice},
		{libvirt.Error{Code: uint32(libvirt.ErrNoDomain), Message: "Domain not found"}, libvirtapi.ErrDomainNotFound},
	} {
		if err := c.openErr(tc.err, dom, "serial7"); !errors.Is(err, tc.want) {
			t.Errorf("%q: %v, want %v", tc.err.Message, err, tc.want)
		}
	}
}

func TestTarget(t *testing.T) {
	u, _ := transport.Parse("qemu+ssh://root@hv1/system", nil)
	tg := Target(protocols.KindSerial, u, libvirt.Domain{Name: "web", ID: 3}, "serial0", false)
	if tg.Address != "libvirt qemu+ssh://root@hv1/system domain web serial0" || tg.Dial == nil || tg.TLSFromFirstByte() {
		t.Errorf("Target: %+v", tg)
	}
	if a := (Addr{URI: "qemu:///system", Domain: "web"}); a.String() != "libvirt qemu:///system domain web default console" || a.Network() != "libvirt-console" {
		t.Errorf("Addr: %s %s", a.Network(), a)
	}
}
