package libvirtapi

import "testing"

func TestUUID(t *testing.T) {
	u, ok := ParseUUID("6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b")
	if !ok || UUIDString(u) != "6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b" {
		t.Errorf("round trip: %v %s", ok, UUIDString(u))
	}
	if u2, ok := ParseUUID("6f1c0f5e8a7e4b5e9a430c1d2e3f4a5b"); !ok || u2 != u {
		t.Error("dashless UUID")
	}
	for _, bad := range []string{"myvm", "12", "6f1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5", "zf1c0f5e-8a7e-4b5e-9a43-0c1d2e3f4a5b"} {
		if _, ok := ParseUUID(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestOneLine(t *testing.T) {
	if got := OneLine("  first line\nsecond\r\nthird "); got != "first line" {
		t.Errorf("OneLine = %q", got)
	}
}
