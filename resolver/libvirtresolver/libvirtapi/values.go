package libvirtapi

import (
	"encoding/hex"
	"errors"
	"strings"

	libvirt "github.com/digitalocean/go-libvirt"
)

// ErrDomainNotFound means no domain has that name, UUID or ID.
var ErrDomainNotFound = errors.New("domain not found")

// UUIDString formats u as libvirt does.
func UUIDString(u libvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// ParseUUID parses a UUID with or without dashes.
func ParseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || (len(s) != 32 && len(s) != 36) {
		return u, false
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return u, false
	}
	copy(u[:], b)
	return u, true
}

// OneLine returns the first line of s, trimmed: libvirt's messages may
// span lines, errors here are one line.
func OneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i]
	}
	return s
}
