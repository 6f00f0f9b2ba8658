package record

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/virtconsole/virtconsole/resolver"
)

// ManifestSuffix is appended to a recording's name to name its manifest.
const ManifestSuffix = ".manifest.json"

// FormatAsciicast is the manifest's "format" of a serial recording.
const FormatAsciicast = "asciicast-v2"

const manifestVersion = 1

// signingPrefix is prepended to the manifest's JSON before signing, so
// that a signature over a manifest means nothing in any other protocol.
const signingPrefix = "virtconsole recording manifest v1\n"

// Manifest closes a recording: what the file held when the session
// ended, and who the session was.
//
// What is signed: the bytes signingPrefix ("virtconsole recording
// manifest v1" and a newline) followed by the manifest as Go's
// encoding/json marshals this struct with Signature empty (so left out):
// the fields in the order below, no spaces, times in RFC 3339 with
// nanoseconds in UTC. A verifier decodes the file into the struct,
// clears Signature, marshals it again and checks the Ed25519 signature
// over those bytes with the operator's public key, so that a changed
// field (or the file's hash) fails, and fields added to the file are
// ignored, not trusted.
type Manifest struct {
	Version  int       `json:"version"`
	File     string    `json:"file"`   // the recording's base name
	Format   string    `json:"format"` // FormatAsciicast
	SHA256   string    `json:"sha256"` // of the recording's bytes, hex
	Size     int64     `json:"size"`
	Complete bool      `json:"complete"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Session  Identity  `json:"session"`
	Outcome  string    `json:"outcome,omitempty"` // the session's end: closed, error, killed
	Reason   string    `json:"reason,omitempty"`
	// KeyID is the first 16 hex digits of the SHA-256 of the signing
	// public key's PKIX DER, to tell keys apart; it is not trusted.
	KeyID     string `json:"key_id,omitempty"`
	Signature string `json:"signature,omitempty"` // base64 Ed25519
}

// signed returns the bytes the signature covers.
func (m *Manifest) signed() ([]byte, error) {
	c := *m
	c.Signature = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, err
	}
	return append([]byte(signingPrefix), b...), nil
}

func (m *Manifest) sign(k *Key) error {
	if k == nil || k.Private == nil {
		return nil
	}
	m.KeyID = k.ID()
	msg, err := m.signed()
	if err != nil {
		return err
	}
	m.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(k.Private, msg))
	return nil
}

// writeManifest writes m beside its recording, mode 0600, whole or not
// at all (resolver.WriteFileAtomic).
func writeManifest(path string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := resolver.WriteFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("cannot write the manifest %s: %w", path, unwrapErr(err))
	}
	return nil
}

// Key is a recording signing key: the private key signs (the proxy's
// --record-key), the public key verifies.
type Key struct {
	Private ed25519.PrivateKey // nil for a public key alone
	Public  ed25519.PublicKey
}

// ID is the first 16 hex digits of the SHA-256 of the public key's
// PKIX DER.
func (k *Key) ID() string {
	der, _ := x509.MarshalPKIXPublicKey(k.Public)
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey writes a new Ed25519 key to path (PEM PKCS#8, mode 0600)
// and its public key to PublicKeyPath(path) (PEM PKIX, 0644); it
// overwrites neither.
func GenerateKey(path string) (*Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(PublicKeyPath(path), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(path)
		return nil, err
	}
	return &Key{Private: priv, Public: pub}, nil
}

// PublicKeyPath is where GenerateKey writes the public key of the key
// at path: path without ".pem", then ".pub.pem".
func PublicKeyPath(path string) string { return strings.TrimSuffix(path, ".pem") + ".pub.pem" }

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("cannot create %s: %w (it is not overwritten)", path, unwrapErr(err))
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("cannot write %s: %w", path, unwrapErr(err))
	}
	return nil
}

func unwrapErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// LoadPrivateKey reads the signing key at path (PEM PKCS#8 Ed25519), which
// only its owner may read.
func LoadPrivateKey(path string) (*Key, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("recording key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("recording key %s is readable by others (mode %04o); chmod 600 it", path, fi.Mode().Perm())
	}
	k, err := LoadKey(path)
	if err != nil {
		return nil, err
	}
	if k.Private == nil {
		return nil, fmt.Errorf("recording key %s is a public key; give the private key ('virtconsole recordings keygen' writes both)", path)
	}
	return k, nil
}

// LoadKey reads a public key (PEM PKIX) or a private key (PEM PKCS#8,
// whose public key it derives) at path: what verifies recordings.
func LoadKey(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recording key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("recording key %s: not PEM; want an Ed25519 key from 'virtconsole recordings keygen'", path)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		priv, ok := k.(ed25519.PrivateKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("recording key %s: not an Ed25519 private key (PKCS#8)", path)
		}
		return &Key{Private: priv, Public: priv.Public().(ed25519.PublicKey)}, nil
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		pub, ok := k.(ed25519.PublicKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("recording key %s: not an Ed25519 public key", path)
		}
		return &Key{Public: pub}, nil
	}
	return nil, fmt.Errorf("recording key %s: a PEM %q block; want PRIVATE KEY or PUBLIC KEY (Ed25519)", path, block.Type)
}

// Verification outcomes (Status of VerifyFile's result).
const (
	StatusVerified   = "verified"   // manifest signed by the key, hash and size match
	StatusIncomplete = "incomplete" // no manifest: the session was cut short
	StatusInvalid    = "invalid"    // the manifest, its signature or the file does not match
)

// Verification is VerifyFile's result.
type Verification struct {
	Status   string    // StatusVerified, StatusIncomplete or StatusInvalid
	Reason   string    // one line: why it is not verified
	Manifest *Manifest // nil when there is none, or it cannot be read
}

// VerifyFile checks the recording at path against its manifest and the
// manifest's signature against key (the operator's, never one found
// beside the recording).
func VerifyFile(path string, key *Key) (*Verification, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the recording: %w", err)
	}
	mdata, err := os.ReadFile(path + ManifestSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return &Verification{Status: StatusIncomplete, Reason: "no manifest: the recording was cut short (the proxy stopped before the session ended); it plays up to its last complete event"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read the manifest: %w", err)
	}
	invalid := func(m *Manifest, format string, args ...any) (*Verification, error) {
		return &Verification{Status: StatusInvalid, Reason: fmt.Sprintf(format, args...), Manifest: m}, nil
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(mdata))
	if err := dec.Decode(&m); err != nil {
		return invalid(nil, "the manifest is not valid JSON: %v", err)
	}
	if m.Signature == "" {
		return invalid(&m, "the manifest is not signed (the proxy had no --record-key)")
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return invalid(&m, "the manifest's signature is malformed")
	}
	msg, err := m.signed()
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(key.Public, msg, sig) {
		return invalid(&m, "the manifest's signature does not verify with this key (the manifest was changed, or signed with another key: key_id %q, this key's %s)", m.KeyID, key.ID())
	}
	if m.File != filepath.Base(path) {
		return invalid(&m, "the manifest is of %s, not of this file", m.File)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != m.Size || hex.EncodeToString(sum[:]) != m.SHA256 {
		return invalid(&m, "the recording's SHA-256 or size differs from its signed manifest (the file was changed)")
	}
	if !m.Complete {
		return invalid(&m, "the manifest says the recording is not complete")
	}
	return &Verification{Status: StatusVerified, Manifest: &m}, nil
}
