package grant

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/virtconsole/virtconsole/protocols"
)

// FuzzVerify: any string given to Verify is refused with one of its
// sentinel errors (a one-line 403 reason), or verifies to exactly the
// claims of a grant the key minted: a change to a grant never yields
// other claims, and nothing panics.
func FuzzVerify(f *testing.F) {
	key, err := NewKey([]byte("fuzz-key-0123456789abcdef0123456789abcdef"))
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	minted := map[string]bool{} // the claims' JSON
	// Minted by hand with fixed JTIs (Mint's are random): every fuzzing
	// process must know the same grants.
	for i, c := range []Claims{
		{Console: "0123456789ab", Role: protocols.RoleView},
		{Domain: "myvm", Kind: protocols.KindVNC, Index: 0, Role: protocols.RoleControl},
		{Session: "3f46e0a823f092c8", Role: protocols.RoleView, By: "alice"},
	} {
		c.V, c.Iat, c.Exp, c.JTI = Version, now.Unix(), now.Add(15*time.Minute).Unix(), fmt.Sprintf("%016x", i)
		b, err := json.Marshal(&c)
		if err != nil {
			f.Fatal(err)
		}
		minted[string(b)] = true
		payload := base64.RawURLEncoding.EncodeToString(b)
		tok := Prefix + payload + "." + base64.RawURLEncoding.EncodeToString(key.sign(payload))
		if _, err := key.Verify(tok, now); err != nil {
			f.Fatal(err)
		}
		f.Add(tok)
		f.Add(tok[:len(tok)-3])
		f.Add(strings.Replace(tok, ".", "..", 1))
	}
	f.Add("vcg1.")
	f.Add("vcg1.e30.")
	f.Add("not-a-grant")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := key.Verify(token, now)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrRole) {
				t.Fatalf("Verify(%q): %v, not one of the grant errors", token, err)
			}
			// The 403's reason: the sentinel's text alone, so never the grant.
			if msg := err.Error(); msg != ErrMalformed.Error() && msg != ErrSignature.Error() && msg != ErrExpired.Error() && msg != ErrRole.Error() {
				t.Fatalf("Verify(%q): error %q is not a grant error's one-line reason", token, msg)
			}
			return
		}
		b, _ := json.Marshal(c)
		if !minted[string(b)] {
			t.Fatalf("Verify(%q) accepted claims the key never signed: %s", token, b)
		}
	})
}
