package authz

import (
	"crypto/rand"
	"crypto/sha256"
	"hash/crc32"
	"unsafe"
)

// Secret format: SecretPrefix, 43 base62 characters of crypto/rand (256 bits),
// then a 6-character base62 CRC-32 of everything before it. The checksum lets
// a mistyped or truncated key be rejected without a store lookup, and the
// fixed prefix lets secret scanners recognise a leaked key.
const (
	SecretPrefix = "sk-kg-"
	secretBody   = 43
	checksumLen  = 6
	// SecretLen is the length of every well-formed secret.
	SecretLen = len(SecretPrefix) + secretBody + checksumLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// KeyHash is the SHA-256 of a whole secret: the only form a store keeps.
type KeyHash [sha256.Size]byte

// NewSecret returns a fresh secret from crypto/rand.
func NewSecret() string {
	b := make([]byte, SecretLen)
	copy(b, SecretPrefix)
	body := b[len(SecretPrefix) : len(SecretPrefix)+secretBody]
	var rnd [64]byte
	for i := 0; i < len(body); {
		rand.Read(rnd[:]) // never fails (crypto/rand documents a crash instead)
		for _, c := range rnd {
			// 248 is the largest multiple of 62 below 256: no modulo bias.
			if c < 248 && i < len(body) {
				body[i] = base62[c%62]
				i++
			}
		}
	}
	putChecksum(b[len(b)-checksumLen:], checksum(string(b[:len(b)-checksumLen])))
	return string(b)
}

// ValidSecret reports whether s has the secret format and a correct checksum.
// It does no allocation and no lookup.
func ValidSecret(s string) bool {
	if len(s) != SecretLen || s[:len(SecretPrefix)] != SecretPrefix {
		return false
	}
	var class byte
	for i := len(SecretPrefix); i < len(s); i++ {
		class |= notBase62[s[i]]
	}
	if class != 0 {
		return false
	}
	var want [checksumLen]byte
	putChecksum(want[:], checksum(s[:len(s)-checksumLen]))
	return string(want[:]) == s[len(s)-checksumLen:]
}

// HashSecret returns the SHA-256 of s without allocating for secrets of the
// standard length.
func HashSecret(s string) KeyHash {
	var buf [SecretLen]byte
	if len(s) <= len(buf) {
		n := copy(buf[:], s)
		return sha256.Sum256(buf[:n])
	}
	return sha256.Sum256([]byte(s))
}

// SecretHint returns the part of a secret that is safe to show: its prefix
// and last four characters, as in "sk-kg-...wxyz".
func SecretHint(s string) string {
	if len(s) < len(SecretPrefix)+4 {
		return SecretPrefix + "..."
	}
	return SecretPrefix + "..." + s[len(s)-4:]
}

// checksum is CRC-32 (IEEE) of s, computed over the string itself so that
// checking a secret does not allocate.
func checksum(s string) uint32 {
	return crc32.ChecksumIEEE(unsafe.Slice(unsafe.StringData(s), len(s))) // read only
}

func putChecksum(dst []byte, sum uint32) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = base62[sum%62]
		sum /= 62
	}
}

func isBase62(c byte) bool { return notBase62[c] == 0 }

// notBase62 is 1 for the bytes outside base62: a table, because the
// comparisons mispredict on random characters.
var notBase62 = func() (t [256]byte) {
	for i := range t {
		t[i] = 1
	}
	for i := range len(base62) {
		t[base62[i]] = 0
	}
	return t
}()
