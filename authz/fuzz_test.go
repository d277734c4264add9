package authz_test

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

// FuzzValidSecret checks the key format: the check never panics; a secret
// it accepts has the fixed length, prefix and alphabet, and stops being
// valid when any one character changes (CRC-32 catches every error within
// 32 bits); the hint shows no more than the last four characters; the hash
// is the SHA-256 of the whole string.
func FuzzValidSecret(f *testing.F) {
	valid := "sk-kg-6p7uZ4mQLjQjzuFC1thPMDDcJP6hnodRZTswP2B5vkP0WsKUU"
	f.Add(valid)                                // a real key
	f.Add(valid[:len(valid)-1] + "V")           // wrong checksum
	f.Add(valid[:len(valid)-1])                 // truncated
	f.Add("sk-kg-" + strings.Repeat("0", 49))   // right shape, wrong checksum
	f.Add(strings.ToUpper(valid))               // case matters
	f.Add("sk-kg-\x00\xff" + valid[8:])         // NUL, invalid UTF-8
	f.Add("sk-kg-6p7uZ4mQLjQjzuFC1thPMDDcJP6h") // short
	f.Fuzz(func(t *testing.T, s string) {
		if authz.HashSecret(s) != sha256.Sum256([]byte(s)) {
			t.Fatalf("HashSecret(%q) is not its SHA-256", s)
		}
		hint := authz.SecretHint(s)
		if shown := strings.TrimPrefix(hint, authz.SecretPrefix+"..."); len(shown) > 4 || !strings.HasSuffix(s, shown) {
			t.Fatalf("SecretHint(%q) = %q shows more than the last four characters", s, hint)
		}
		if !authz.ValidSecret(s) {
			return
		}
		if len(s) != authz.SecretLen || !strings.HasPrefix(s, authz.SecretPrefix) {
			t.Fatalf("ValidSecret accepted %q: wrong length or prefix", s)
		}
		const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		for i := len(authz.SecretPrefix); i < len(s); i++ {
			if strings.IndexByte(base62, s[i]) < 0 {
				t.Fatalf("ValidSecret accepted %q: %q at %d is not base62", s, s[i], i)
			}
			for _, c := range []byte{'0', 'z', s[i] ^ 1} {
				if typo := s[:i] + string(c) + s[i+1:]; c != s[i] && authz.ValidSecret(typo) {
					t.Fatalf("ValidSecret accepted both %q and its typo %q", s, typo)
				}
			}
		}
	})
}
