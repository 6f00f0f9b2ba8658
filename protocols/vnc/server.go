package vnc

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/virtconsole/virtconsole/protocols"
)

// Server runs the QEMU leg of the handshake on a freshly dialled conn,
// before the viewer is accepted: version, security type, VeNCrypt and the
// TLS upgrade, VNC authentication, SecurityResult. It stops before
// ClientInit, which the viewer sends in pass-through. It returns the conn
// to pass bytes through (a *tls.Conn over qemu after VeNCrypt) and which
// authentication was used.
//
// The security type follows t: VeNCrypt with sub-type X509None or X509Vnc
// (VNC password t.Password inside TLS) always; None and VNC
// authentication only when t.Insecure or t.TLSTunnel (qemu is then
// already inside TLS). A target that is neither never falls back to
// cleartext, whatever QEMU offers. When QEMU explains a failure (a wrong
// password, too many clients) the error wraps a *protocols.HandshakeError
// carrying QEMU's reason. The whole exchange honours ctx's deadline. On
// error the caller closes qemu.
func (h *Handshaker) Server(ctx context.Context, qemu net.Conn, t protocols.Target) (net.Conn, protocols.Info, error) {
	defer protocols.Deadline(ctx, qemu)()
	name := "QEMU"
	if t.Address != "" {
		name = "QEMU at " + t.Address
	}
	s := &serverLeg{h: h, t: t, p: newPeer(ctx, qemu, name)}
	return s.run()
}

type serverLeg struct {
	h *Handshaker
	t protocols.Target
	p *peer
	v rfbVersion // negotiated with QEMU
}

func (s *serverLeg) run() (net.Conn, protocols.Info, error) {
	v, err := s.version()
	if err != nil {
		return nil, protocols.Info{}, err
	}
	s.v = v
	sec, err := s.security(v)
	if err != nil {
		return nil, protocols.Info{}, err
	}
	switch sec {
	case SecurityNone:
		// RFC 6143 §7.2.1: SecurityResult follows None from 3.8 on only.
		if v == rfb38 {
			if err := s.securityResult(s.p, "check QEMU's VNC settings"); err != nil {
				return nil, protocols.Info{}, err
			}
		}
		return s.p.Conn, protocols.Info{Auth: AuthNone}, nil
	case SecurityVNCAuth:
		if err := s.vncAuth(s.p); err != nil {
			return nil, protocols.Info{}, err
		}
		return s.p.Conn, protocols.Info{Auth: AuthVNC}, nil
	default: // SecurityVeNCrypt, the only other type choose returns
		return s.vencrypt()
	}
}

// version reads QEMU's ProtocolVersion and answers with the highest
// version both speak (RFC 6143 §7.1.1).
func (s *serverLeg) version() (rfbVersion, error) {
	var b [versionLen]byte
	if err := s.p.Read(b[:], "its RFB version"); err != nil {
		return 0, err
	}
	major, minor, ok := parseVersion(b[:])
	if !ok {
		return 0, fmt.Errorf("vnc: %s is not a VNC server (it sent %s, not an RFB version); check the console's address and type", s.p.Name, quoteVersion(b[:]))
	}
	v := rfb33 // RFC 6143 §7.1.1: unknown 3.x versions (3.889, …) are 3.3
	switch {
	case major > 3, major == 3 && minor == 8:
		v = rfb38
	case major == 3 && minor == 7:
		v = rfb37
	}
	if err := s.p.Write([]byte(v.message()), "our RFB version"); err != nil {
		return 0, err
	}
	return v, nil
}

// security reads the security types QEMU offers (3.7+: a list, 3.3: the
// one QEMU chose), picks one by the target's policy and sends the choice.
// Nothing is sent when no offered type is acceptable.
func (s *serverLeg) security(v rfbVersion) (SecurityType, error) {
	var offered []SecurityType
	if v == rfb33 {
		// RFC 6143 Appendix A / rfbproto §7.1.2: in 3.3 the server
		// decides and sends the type as a u32; 0 means failure.
		u, err := s.p.ReadU32("its security type")
		if err != nil {
			return 0, err
		}
		if u == uint32(SecurityInvalid) {
			return 0, s.refused("refused the connection")
		}
		if u > 255 {
			return 0, fmt.Errorf("vnc: %s sent security type %d, which RFB does not define; check the console's address and type", s.p.Name, u)
		}
		offered = []SecurityType{SecurityType(u)}
	} else {
		n, err := s.p.ReadU8("the number of security types")
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, s.refused("refused the connection")
		}
		b := make([]byte, n)
		if err := s.p.Read(b, "its security types"); err != nil {
			return 0, err
		}
		for _, c := range b {
			offered = append(offered, SecurityType(c))
		}
	}
	chosen, err := s.choose(offered)
	if err != nil {
		return 0, err
	}
	if v != rfb33 {
		if err := s.p.Write([]byte{byte(chosen)}, "the security type"); err != nil {
			return 0, err
		}
	}
	return chosen, nil
}

// refused reads the reason that follows a failure (u32 length + text)
// and returns it as a HandshakeError.
func (s *serverLeg) refused(what string) error {
	reason, err := s.p.readReason("its failure reason")
	if err != nil {
		return err
	}
	if reason == "" {
		reason = "no reason given"
	}
	return &protocols.HandshakeError{Op: "vnc: " + s.p.Name + " " + what, Reason: reason}
}

// choose picks a security type from offered by the target's policy.
func (s *serverLeg) choose(offered []SecurityType) (SecurityType, error) {
	// Cleartext types are allowed only when the target says so, or when
	// the conn is already inside TLS.
	cleartextOK := s.t.Insecure || s.t.TLSTunnel
	plain := []SecurityType{SecurityNone, SecurityVNCAuth}
	if s.t.Password != "" {
		plain = []SecurityType{SecurityVNCAuth, SecurityNone}
	}
	var order []SecurityType
	switch {
	case s.t.TLSTunnel:
		order = plain
		if s.h.TLSConfig != nil {
			order = append(order, SecurityVeNCrypt)
		}
	case s.t.Insecure:
		if s.h.TLSConfig != nil {
			order = append(order, SecurityVeNCrypt)
		}
		order = append(order, plain...)
	default:
		order = []SecurityType{SecurityVeNCrypt}
	}
	for _, c := range order {
		if !slices.Contains(offered, c) {
			continue
		}
		if c == SecurityVNCAuth && s.t.Password == "" {
			return 0, fmt.Errorf("vnc: %s wants a VNC password and the resolver gave none; set the console's password", s.p.Name)
		}
		return c, nil
	}

	only := func(types ...SecurityType) bool {
		for _, o := range offered {
			if !slices.Contains(types, o) {
				return false
			}
		}
		return true
	}
	list := names(offered)
	switch {
	case !cleartextOK && only(SecurityNone, SecurityVNCAuth):
		return 0, fmt.Errorf("vnc: %s offers no TLS (offered: %s); enable TLS on QEMU's VNC server (vnc_tls=1) or mark the console insecure", s.p.Name, list)
	case only(SecuritySASL):
		return 0, fmt.Errorf("vnc: %s offers only SASL; virtconsole supports VeNCrypt x509 (vnc_tls=1, without vnc_sasl) and, on insecure consoles, None and VNC passwords", s.p.Name)
	case slices.Contains(offered, SecurityVeNCrypt) && s.h.TLSConfig == nil:
		return 0, fmt.Errorf("vnc: %s wants VeNCrypt TLS and no TLS client credentials are configured; give virtconsole the cert directory for QEMU's CA", s.p.Name)
	case !cleartextOK:
		return 0, fmt.Errorf("vnc: %s offers no VeNCrypt (offered: %s); enable TLS on QEMU's VNC server (vnc_tls=1) or mark the console insecure", s.p.Name, list)
	}
	return 0, fmt.Errorf("vnc: %s offers no security type virtconsole supports (offered: %s); use VeNCrypt x509 (vnc_tls=1), None or a VNC password", s.p.Name, list)
}

// vencrypt runs VeNCrypt 0.2 (rfbproto "VeNCrypt"): version, sub-type,
// TLS upgrade on the same conn, then the sub-type's authentication and
// the SecurityResult inside TLS.
func (s *serverLeg) vencrypt() (net.Conn, protocols.Info, error) {
	p := s.p
	var ver [2]byte
	if err := p.Read(ver[:], "its VeNCrypt version"); err != nil {
		return nil, protocols.Info{}, err
	}
	if ver[0] == 0 && ver[1] < 2 {
		return nil, protocols.Info{}, fmt.Errorf("vnc: %s speaks VeNCrypt %d.%d only; virtconsole needs 0.2 (update QEMU)", p.Name, ver[0], ver[1])
	}
	if err := p.Write([]byte{0, 2}, "our VeNCrypt version"); err != nil {
		return nil, protocols.Info{}, err
	}
	ack, err := p.ReadU8("its VeNCrypt version answer")
	if err != nil {
		return nil, protocols.Info{}, err
	}
	if ack != 0 {
		return nil, protocols.Info{}, fmt.Errorf("vnc: %s refused VeNCrypt version 0.2 (status %d); update QEMU", p.Name, ack)
	}
	n, err := p.ReadU8("the number of VeNCrypt sub-types")
	if err != nil {
		return nil, protocols.Info{}, err
	}
	if n == 0 {
		return nil, protocols.Info{}, fmt.Errorf("vnc: %s offers no VeNCrypt sub-type; check QEMU's VNC TLS settings", p.Name)
	}
	b := make([]byte, 4*int(n))
	if err := p.Read(b, "its VeNCrypt sub-types"); err != nil {
		return nil, protocols.Info{}, err
	}
	subs := make([]VeNCryptSubtype, n)
	for i := range subs {
		subs[i] = VeNCryptSubtype(binary.BigEndian.Uint32(b[4*i:]))
	}
	sub, err := s.chooseSubtype(subs)
	if err != nil {
		return nil, protocols.Info{}, err
	}
	if err := p.Write(binary.BigEndian.AppendUint32(nil, uint32(sub)), "the VeNCrypt sub-type"); err != nil {
		return nil, protocols.Info{}, err
	}
	accepted, err := p.ReadU8("its VeNCrypt sub-type answer")
	if err != nil {
		return nil, protocols.Info{}, err
	}
	if accepted != 1 {
		return nil, protocols.Info{}, fmt.Errorf("vnc: %s rejected VeNCrypt sub-type %s it offered (status %d); check QEMU's VNC TLS settings", p.Name, sub, accepted)
	}

	// The TLS handshake starts on the same conn. Nothing above read
	// ahead, so QEMU's first TLS record is still unread.
	var cfg *tls.Config
	if s.h.TLSConfig != nil {
		cfg = s.h.TLSConfig(s.t.Host())
	}
	if cfg == nil {
		return nil, protocols.Info{}, fmt.Errorf("vnc: %s wants VeNCrypt TLS and no TLS client credentials are configured; give virtconsole the cert directory for QEMU's CA", p.Name)
	}
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = s.t.Host()
	}
	tc := tls.Client(p.Conn, cfg)
	if err := tc.HandshakeContext(p.Ctx); err != nil {
		if p.Ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, protocols.Info{}, p.IOError(err, "in the TLS handshake")
		}
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, protocols.Info{}, fmt.Errorf("vnc: %s presented a certificate virtconsole does not accept: %w; give virtconsole the CA that signed QEMU's server-cert.pem, and make sure the certificate names %s", p.Name, err, cfg.ServerName)
		}
		return nil, protocols.Info{}, fmt.Errorf("vnc: TLS with %s failed: %w; check QEMU's tls-creds-x509 and virtconsole's cert directory (CA, client certificate, TLS version)", p.Name, err)
	}
	tp := newPeer(p.Ctx, tc, p.Name)
	info := protocols.Info{Auth: AuthVeNCryptX509None}
	if sub == VeNCryptX509VNC {
		info.Auth = AuthVeNCryptX509VNC
		err = s.vncAuth(tp)
	} else {
		// X509None continues "as for None" (rfbproto), but QEMU and
		// TigerVNC send the SecurityResult after VeNCrypt in every RFB
		// version.
		err = s.securityResult(tp, "check QEMU's VNC settings")
	}
	if err != nil {
		return nil, protocols.Info{}, s.afterTLSError(err, cfg)
	}
	return tc, info, nil
}

// afterTLSError explains a QEMU that hangs up (or sends a TLS alert)
// right after the TLS handshake: with TLS 1.3 the client's handshake
// completes before QEMU has checked the client certificate, so this is
// how a verify-peer QEMU rejects it.
func (s *serverLeg) afterTLSError(err error, cfg *tls.Config) error {
	var he *protocols.HandshakeError
	if errors.As(err, &he) || s.p.Ctx.Err() != nil {
		return err
	}
	alert := strings.Contains(err.Error(), "remote error: tls:")
	if !alert && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
		return err
	}
	cert := "it presented none"
	if len(cfg.Certificates) > 0 || cfg.GetClientCertificate != nil {
		cert = "check that it is signed by a CA in QEMU's ca-cert.pem and valid for client auth"
	}
	return fmt.Errorf("vnc: %s ended the session right after the TLS handshake (%v): it probably rejected virtconsole's client certificate (verify-peer); %s", s.p.Name, errors.Unwrap(err), cert)
}

// chooseSubtype picks X509Vnc when there is a password, X509None
// otherwise, falling back to the other one; nothing else is acceptable.
func (s *serverLeg) chooseSubtype(offered []VeNCryptSubtype) (VeNCryptSubtype, error) {
	order := []VeNCryptSubtype{VeNCryptX509None, VeNCryptX509VNC}
	if s.t.Password != "" {
		order = []VeNCryptSubtype{VeNCryptX509VNC, VeNCryptX509None}
	}
	for _, c := range order {
		if !slices.Contains(offered, c) {
			continue
		}
		if c == VeNCryptX509VNC && s.t.Password == "" {
			return 0, fmt.Errorf("vnc: %s wants a VNC password (VeNCrypt X509Vnc) and the resolver gave none; set the console's password", s.p.Name)
		}
		return c, nil
	}
	list := names(offered)
	anonymous := slices.ContainsFunc(offered, func(o VeNCryptSubtype) bool {
		return o == VeNCryptTLSNone || o == VeNCryptTLSVNC || o == VeNCryptTLSPlain || o == VeNCryptTLSSASL
	})
	switch {
	case slices.ContainsFunc(offered, func(o VeNCryptSubtype) bool { return o == VeNCryptTLSSASL || o == VeNCryptX509SASL }):
		return 0, fmt.Errorf("vnc: %s offers VeNCrypt with SASL only (offered: %s); virtconsole supports VeNCrypt X509None and X509Vnc: turn SASL off on QEMU's VNC server", s.p.Name, list)
	case anonymous:
		return 0, fmt.Errorf("vnc: %s offers only anonymous TLS (offered: %s), which cannot authenticate QEMU; give QEMU x509 certificates (tls-creds-x509, vnc_tls_x509_cert_dir)", s.p.Name, list)
	}
	return 0, fmt.Errorf("vnc: %s offers no VeNCrypt x509 sub-type virtconsole supports (offered: %s); virtconsole supports X509None and X509Vnc (tls-creds-x509 with or without password=on)", s.p.Name, list)
}

// vncAuth answers QEMU's VNC authentication challenge (RFC 6143 §7.2.2)
// with the target's password and reads the SecurityResult.
func (s *serverLeg) vncAuth(p *peer) error {
	var challenge [16]byte
	if err := p.Read(challenge[:], "its VNC authentication challenge"); err != nil {
		return err
	}
	resp := vncAuthResponse(s.t.Password, challenge)
	if err := p.Write(resp[:], "the VNC authentication response"); err != nil {
		return err
	}
	// VNC authentication is followed by a SecurityResult in every version.
	return s.securityResult(p, "check the VNC password the resolver gives")
}

// securityResult reads a SecurityResult (RFC 6143 §7.1.3): u32 0 for OK;
// otherwise, from 3.8 on, a reason follows. A failure returns an error
// wrapping *protocols.HandshakeError with QEMU's reason and hint appended.
func (s *serverLeg) securityResult(p *peer, hint string) error {
	st, err := p.ReadU32("its security result")
	if err != nil {
		return err
	}
	if st == securityResultOK {
		return nil
	}
	var reason string
	if s.v == rfb38 {
		// If QEMU closes without a reason, the status still says it all.
		reason, _ = p.readReason("its failure reason")
	}
	if reason == "" {
		reason = "authentication failed"
		if st == securityResultTooManyTries {
			reason = "too many authentication failures"
		}
	}
	herr := &protocols.HandshakeError{Op: "vnc: " + p.Name + " refused authentication", Reason: reason}
	return fmt.Errorf("%w; %s", herr, hint)
}
