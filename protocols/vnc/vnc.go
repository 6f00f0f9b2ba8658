// Package vnc is the RFB (VNC) man in the middle: it negotiates version
// and security with QEMU on one leg (VeNCrypt x509 TLS, VNC password
// authentication inside it) and with the viewer on the other (offering
// only None, since the viewer's leg is already authenticated), then hands
// both connections back for byte pass-through from ClientInit on. The
// viewer's side is filtered on its way (Input): its ClientInit always asks
// for a shared session, and a view-only viewer's input is dropped.
//
// References: RFC 6143 ("The Remote Framebuffer Protocol") and the
// community RFB specification (rfbproto, rfbproto.rst), which documents
// the VeNCrypt security type and its sub-types. All integers on the wire
// are big-endian.
package vnc

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/virtconsole/virtconsole/protocols"
)

// ProtocolVersion messages (RFC 6143 §7.1.1): exactly 12 bytes,
// "RFB xxx.yyy\n". Only 3.3, 3.7 and 3.8 are published; any other version
// is to be treated as 3.3.
const (
	ProtocolVersion33 = "RFB 003.003\n"
	ProtocolVersion37 = "RFB 003.007\n"
	ProtocolVersion38 = "RFB 003.008\n"
)

// versionLen is the length of a ProtocolVersion message.
const versionLen = 12

// SecurityType is an RFB security type (RFC 6143 §7.1.2 and §8.1.2, IANA
// "RFB Security Types"; 19 and 20 from rfbproto).
type SecurityType uint8

// Security types.
const (
	SecurityInvalid  SecurityType = 0  // RFC 6143 §7.1.2: failure, a reason follows
	SecurityNone     SecurityType = 1  // RFC 6143 §7.2.1
	SecurityVNCAuth  SecurityType = 2  // RFC 6143 §7.2.2: DES challenge-response
	SecurityRA2      SecurityType = 5  // RealVNC
	SecurityRA2NE    SecurityType = 6  // RealVNC "RA2ne"
	SecurityTight    SecurityType = 16 // rfbproto "Tight Security Type"
	SecurityUltra    SecurityType = 17 // UltraVNC
	SecurityTLS      SecurityType = 18 // rfbproto "TLS" (anonymous, Vino)
	SecurityVeNCrypt SecurityType = 19 // rfbproto "VeNCrypt"
	SecuritySASL     SecurityType = 20 // rfbproto "SASL" (gtk-vnc, QEMU)
	SecurityMD5      SecurityType = 21 // rfbproto "MD5 hash"
	SecurityXVP      SecurityType = 22 // rfbproto "xvp"
)

var securityNames = map[SecurityType]string{
	SecurityInvalid:  "Invalid",
	SecurityNone:     "None",
	SecurityVNCAuth:  "VNC",
	SecurityRA2:      "RA2",
	SecurityRA2NE:    "RA2ne",
	SecurityTight:    "Tight",
	SecurityUltra:    "Ultra",
	SecurityTLS:      "TLS",
	SecurityVeNCrypt: "VeNCrypt",
	SecuritySASL:     "SASL",
	SecurityMD5:      "MD5",
	SecurityXVP:      "xvp",
}

func (s SecurityType) String() string {
	if n, ok := securityNames[s]; ok {
		return n
	}
	return fmt.Sprintf("type %d", uint8(s))
}

// VeNCryptSubtype is a VeNCrypt 0.2 sub-type (rfbproto "VeNCrypt",
// section "VeNCrypt protocol 0.2"), sent as a u32.
type VeNCryptSubtype uint32

// VeNCrypt sub-types. The TLS* ones use anonymous Diffie-Hellman TLS,
// which cannot authenticate QEMU (and Go's TLS does not implement); the
// X509* ones use certificate-verified TLS.
const (
	VeNCryptPlain     VeNCryptSubtype = 256 // username+password in cleartext
	VeNCryptTLSNone   VeNCryptSubtype = 257
	VeNCryptTLSVNC    VeNCryptSubtype = 258
	VeNCryptTLSPlain  VeNCryptSubtype = 259
	VeNCryptX509None  VeNCryptSubtype = 260
	VeNCryptX509VNC   VeNCryptSubtype = 261
	VeNCryptX509Plain VeNCryptSubtype = 262
	VeNCryptTLSSASL   VeNCryptSubtype = 263
	VeNCryptX509SASL  VeNCryptSubtype = 264
)

var subtypeNames = map[VeNCryptSubtype]string{
	VeNCryptPlain:     "Plain",
	VeNCryptTLSNone:   "TLSNone",
	VeNCryptTLSVNC:    "TLSVnc",
	VeNCryptTLSPlain:  "TLSPlain",
	VeNCryptX509None:  "X509None",
	VeNCryptX509VNC:   "X509Vnc",
	VeNCryptX509Plain: "X509Plain",
	VeNCryptTLSSASL:   "TLSSASL",
	VeNCryptX509SASL:  "X509SASL",
}

func (s VeNCryptSubtype) String() string {
	if n, ok := subtypeNames[s]; ok {
		return n
	}
	return fmt.Sprintf("subtype %d", uint32(s))
}

// SecurityResult values (RFC 6143 §7.1.3; 2 is rfbproto's "failed, too
// many attempts").
const (
	securityResultOK           = 0
	securityResultFailed       = 1
	securityResultTooManyTries = 2
)

// MaxReasonLen bounds the failure reasons read from a peer. Longer ones
// are cut to this length (the connection ends after a reason anyway).
const MaxReasonLen = 4096

// Info.Auth values Server reports.
const (
	AuthVeNCryptX509None = "vencrypt-x509none"
	AuthVeNCryptX509VNC  = "vencrypt-x509vnc"
	AuthNone             = "none"
	AuthVNC              = "vnc"
)

// Handshaker negotiates RFB on both legs. Its zero value serves
// insecure and TLS-tunnelled targets; VeNCrypt needs TLSConfig.
type Handshaker struct {
	// TLSConfig returns the client TLS configuration (CA pool, client
	// certificate, policy) for QEMU at host, the host part of the
	// target's address. Server clones it and, when its ServerName is
	// empty, sets it to host, so that crypto/tls verifies QEMU's
	// certificate against the host name or IP dialled. Required for
	// VeNCrypt.
	TLSConfig func(host string) *tls.Config

	// ViewOnly drops the viewer's input on its way to QEMU (see Input).
	// Whatever it says, Client's viewer conn always asks QEMU for a
	// shared session.
	ViewOnly bool

	// Encodings, when set, steers the viewer: its SetEncodings messages
	// reach QEMU listing only the encodings (RFC 6143 §7.7, §7.8) for
	// which it returns true, in the viewer's order (the proxy sets it
	// while recording, so that every recording decodes offline). QEMU
	// then sends nothing else: Raw is always allowed (§7.7.1).
	Encodings func(encoding int32) bool
}

var _ protocols.Handshaker = (*Handshaker)(nil)

// names joins the names of offered security types or sub-types for an
// error message.
func names[T fmt.Stringer](offered []T) string {
	if len(offered) == 0 {
		return "nothing"
	}
	s := make([]string, len(offered))
	for i, o := range offered {
		s[i] = o.String()
	}
	return strings.Join(s, ", ")
}
