package vnc

import (
	"crypto/des"
	"math/bits"
)

// vncAuthResponse answers a VNC authentication challenge (RFC 6143
// §7.2.2): the password, cut or zero-padded to 8 bytes with the bits of
// each byte reversed, is a DES key; each 8-byte half of the 16-byte
// challenge is encrypted with it (ECB).
func vncAuthResponse(password string, challenge [16]byte) [16]byte {
	var key [8]byte
	copy(key[:], password)
	for i, b := range key {
		key[i] = bits.Reverse8(b)
	}
	block, err := des.NewCipher(key[:])
	if err != nil {
		panic(err) // unreachable: the key is always 8 bytes
	}
	var out [16]byte
	block.Encrypt(out[:8], challenge[:8])
	block.Encrypt(out[8:], challenge[8:])
	return out
}
