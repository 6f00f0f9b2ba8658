// Package grant mints and verifies share links: short-lived credentials
// that name a console or a live session, a role and an expiry, signed
// with a key that every proxy replica reads from the same file
// (--grant-key), so that any of them can check a grant without a store.
//
// A grant is "vcg1." + base64url(JSON claims) + "." +
// base64url(HMAC-SHA256(key, "vcg1." + payload)), without padding. The
// claims never hold a console's token or password: a console is named by
// its token's ID (resolver.TokenID, a digest) or by its libvirt domain,
// kind and index, a session by its ID.
package grant

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// Prefix starts every grant; a token without it is not a grant.
const Prefix = "vcg1."

// Version is the claims' v.
const Version = 1

// MinKeyLen is the shortest key accepted, in bytes.
const MinKeyLen = 32

// MaxTTL bounds a grant's lifetime: share links are short-lived.
const MaxTTL = 24 * time.Hour

// Skew is the clock difference between replicas that Verify tolerates.
const Skew = 5 * time.Second

// Errors that Verify wraps; each is a one-line reason fit for a 403.
var (
	ErrMalformed = errors.New("grant malformed")
	ErrSignature = errors.New("grant signature invalid")
	ErrExpired   = errors.New("grant expired")
	ErrRole      = errors.New("grant role not allowed")
)

// Claims are what a grant says.
type Claims struct {
	V int `json:"v"`
	// What the grant opens, one of: Console, the resolver.TokenID of the
	// token that opens a console (static token files); Domain (a libvirt
	// domain's name or UUID) with Kind and Index, its console of that
	// kind and number (the libvirt resolver); Session, a live session's
	// ID.
	Console string         `json:"console,omitempty"`
	Domain  string         `json:"domain,omitempty"`
	Kind    protocols.Kind `json:"kind,omitempty"`
	Index   int            `json:"index,omitempty"`
	Session string         `json:"session,omitempty"`
	// Role is the most the grant's viewers may do.
	Role protocols.Role `json:"role"`
	Exp  int64          `json:"exp"` // unix seconds
	Iat  int64          `json:"iat"` // unix seconds
	// JTI tells grants apart in the audit log (random, 16 hex digits).
	JTI string `json:"jti"`
	// By is who minted it (an admin certificate's CN, or user@host).
	By string `json:"by,omitempty"`
}

// names reports whether c names exactly one thing to open.
func (c *Claims) names() bool {
	n := 0
	for _, s := range []string{c.Console, c.Domain, c.Session} {
		if s != "" {
			n++
		}
	}
	return n == 1 && (c.Domain == "") == (c.Kind == "") && c.Index >= 0
}

// Expiry returns Exp as a time.
func (c *Claims) Expiry() time.Time { return time.Unix(c.Exp, 0) }

// Key signs and verifies grants.
type Key struct {
	secret []byte
}

// NewKey returns a Key for secret, which must be MinKeyLen bytes or more.
func NewKey(secret []byte) (*Key, error) {
	if len(secret) < MinKeyLen {
		return nil, fmt.Errorf("grant key is %d bytes; it needs %d or more", len(secret), MinKeyLen)
	}
	return &Key{secret: append([]byte(nil), secret...)}, nil
}

// LoadKey reads a key file: hex (64+ digits) or raw bytes. Like a token
// file, it must not be readable by group or others.
func LoadKey(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("grant key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("grant key %s is readable by others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("grant key: %w", err)
	}
	secret := data
	if s := strings.TrimSpace(string(data)); len(s) >= 2*MinKeyLen {
		if b, err := hex.DecodeString(s); err == nil {
			secret = b
		}
	}
	k, err := NewKey(secret)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteNewKey writes a new random key, in hex, to path (mode 0600); it
// does not overwrite a file that exists.
func WriteNewKey(path string) error {
	b := make([]byte, MinKeyLen)
	rand.Read(b) // never fails (crypto/rand's documented contract)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("grant key: %w", err)
	}
	if _, err := fmt.Fprintln(f, hex.EncodeToString(b)); err != nil {
		f.Close()
		return fmt.Errorf("grant key: %w", err)
	}
	return f.Close()
}

// Is reports whether token has a grant's form (it may still be invalid).
func Is(token string) bool { return strings.HasPrefix(token, Prefix) }

// Mint signs c, filling V, Iat (from now) and JTI, and Exp from ttl
// (0 < ttl <= MaxTTL).
func (k *Key) Mint(c Claims, now time.Time, ttl time.Duration) (string, *Claims, error) {
	if ttl <= 0 || ttl > MaxTTL {
		return "", nil, fmt.Errorf("grant ttl must be between 1s and %s", MaxTTL)
	}
	if !c.names() {
		return "", nil, errors.New("a grant names one console (a token ID, or a domain and a console kind) or one session")
	}
	if c.Role != protocols.RoleControl && c.Role != protocols.RoleView {
		return "", nil, errors.New("grant role must be control or view")
	}
	c.V = Version
	c.Iat = now.Unix()
	c.Exp = now.Add(ttl).Unix()
	var id [8]byte
	rand.Read(id[:])
	c.JTI = hex.EncodeToString(id[:])
	body, err := json.Marshal(&c)
	if err != nil {
		return "", nil, err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	return Prefix + payload + "." + base64.RawURLEncoding.EncodeToString(k.sign(payload)), &c, nil
}

func (k *Key) sign(payload string) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(Prefix + payload))
	return m.Sum(nil)
}

// Verify checks token's signature (in constant time), expiry (with Skew)
// and claims, and returns them. Errors wrap ErrMalformed, ErrSignature,
// ErrExpired or ErrRole.
func (k *Key) Verify(token string, now time.Time) (*Claims, error) {
	rest, ok := strings.CutPrefix(token, Prefix)
	if !ok {
		return nil, ErrMalformed
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return nil, ErrMalformed
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return nil, ErrSignature
	}
	if !hmac.Equal(mac, k.sign(payload)) {
		return nil, ErrSignature
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(body, &c); err != nil || c.V != Version || !c.names() {
		return nil, ErrMalformed
	}
	if now.After(time.Unix(c.Exp, 0).Add(Skew)) {
		return nil, ErrExpired
	}
	if c.Role != protocols.RoleControl && c.Role != protocols.RoleView {
		return nil, ErrRole
	}
	return &c, nil
}
