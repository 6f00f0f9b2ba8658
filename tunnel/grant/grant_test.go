package grant

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

func testKey(t *testing.T, b byte) *Key {
	t.Helper()
	k, err := NewKey(bytes.Repeat([]byte{b}, MinKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTrip(t *testing.T) {
	k := testKey(t, 1)
	now := time.Now()
	tok, c, err := k.Mint(Claims{Console: "0123456789ab", Role: protocols.RoleView, By: "alice"}, now, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !Is(tok) || c.JTI == "" || c.Exp != now.Add(15*time.Minute).Unix() {
		t.Fatalf("grant %q claims %+v", tok, c)
	}
	got, err := k.Verify(tok, now.Add(14*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if *got != *c {
		t.Fatalf("verified %+v, minted %+v", got, c)
	}
}

func TestExpiry(t *testing.T) {
	k := testKey(t, 1)
	now := time.Unix(time.Now().Unix(), 0) // Exp is in whole seconds
	tok, _, err := k.Mint(Claims{Session: "abcd", Role: protocols.RoleView}, now, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Verify(tok, now.Add(3*time.Second+Skew)); err != nil {
		t.Fatalf("within the skew: %v", err)
	}
	if _, err := k.Verify(tok, now.Add(4*time.Second+Skew)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired: got %v", err)
	}
}

func TestTampered(t *testing.T) {
	k := testKey(t, 1)
	now := time.Now()
	tok, _, err := k.Mint(Claims{Console: "0123456789ab", Role: protocols.RoleView}, now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	payload, sig, _ := strings.Cut(strings.TrimPrefix(tok, Prefix), ".")
	body, _ := base64.RawURLEncoding.DecodeString(payload)
	var m map[string]any
	json.Unmarshal(body, &m)
	m["role"] = "control"
	altered, _ := json.Marshal(m)
	flipped := []byte(sig)
	flipped[0] ^= 1
	for name, bad := range map[string]string{
		"altered payload":   Prefix + base64.RawURLEncoding.EncodeToString(altered) + "." + sig,
		"altered signature": Prefix + payload + "." + string(flipped),
		"no signature":      Prefix + payload,
		"empty signature":   Prefix + payload + ".",
		"not base64":        Prefix + payload + ".!!",
	} {
		if _, err := k.Verify(bad, now); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if _, err := testKey(t, 2).Verify(tok, now); !errors.Is(err, ErrSignature) {
		t.Errorf("wrong key: got %v", err)
	}
	if _, err := k.Verify("s3cret", now); !errors.Is(err, ErrMalformed) {
		t.Errorf("not a grant: got %v", err)
	}
}

// TestUnknownRole signs claims with a role no proxy knows: correctly
// signed, still refused.
func TestUnknownRole(t *testing.T) {
	k := testKey(t, 1)
	body, _ := json.Marshal(Claims{V: Version, Console: "0123456789ab", Role: "admin", Exp: time.Now().Add(time.Minute).Unix()})
	payload := base64.RawURLEncoding.EncodeToString(body)
	tok := Prefix + payload + "." + base64.RawURLEncoding.EncodeToString(k.sign(payload))
	if _, err := k.Verify(tok, time.Now()); !errors.Is(err, ErrRole) {
		t.Fatalf("got %v", err)
	}
	if _, _, err := k.Mint(Claims{Console: "x", Role: "admin"}, time.Now(), time.Minute); err == nil {
		t.Fatal("minted an unknown role")
	}
}

func TestMintBounds(t *testing.T) {
	k := testKey(t, 1)
	for _, c := range []struct {
		claims Claims
		ttl    time.Duration
	}{
		{Claims{Console: "x", Role: protocols.RoleView}, 0},
		{Claims{Console: "x", Role: protocols.RoleView}, MaxTTL + time.Second},
		{Claims{Role: protocols.RoleView}, time.Minute},
		{Claims{Console: "x", Session: "y", Role: protocols.RoleView}, time.Minute},
	} {
		if _, _, err := k.Mint(c.claims, time.Now(), c.ttl); err == nil {
			t.Errorf("minted %+v for %s", c.claims, c.ttl)
		}
	}
}

// TestVerifyUsesHMACEqual checks that the signature is compared with
// hmac.Equal (constant time), not ==.
func TestVerifyUsesHMACEqual(t *testing.T) {
	src, err := os.ReadFile("grant.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("hmac.Equal(mac, k.sign(payload))")) {
		t.Fatal("Verify does not compare signatures with hmac.Equal")
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "grant.key")
	if err := WriteNewKey(path); err != nil {
		t.Fatal(err)
	}
	if err := WriteNewKey(path); err == nil {
		t.Fatal("overwrote a key file")
	}
	k, err := LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.secret) != MinKeyLen {
		t.Fatalf("key of %d bytes", len(k.secret))
	}
	os.Chmod(path, 0o644)
	if _, err := LoadKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("exposed key: got %v", err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("abc"), 0o600)
	if _, err := LoadKey(short); err == nil {
		t.Fatal("loaded a short key")
	}
}
