package authz_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

func TestNewSecretIsWellFormed(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		s := authz.NewSecret()
		if len(s) != authz.SecretLen || !strings.HasPrefix(s, authz.SecretPrefix) {
			t.Fatalf("NewSecret() = %q: want %d characters starting %q", s, authz.SecretLen, authz.SecretPrefix)
		}
		if !authz.ValidSecret(s) {
			t.Fatalf("ValidSecret(%q) = false for a fresh secret", s)
		}
		if seen[s] {
			t.Fatalf("NewSecret() repeated %q", s)
		}
		seen[s] = true
	}
}

// Every single-character typo is caught by the checksum: CRC-32 detects all
// errors confined to one byte.
func TestValidSecretRejectsEveryTypo(t *testing.T) {
	s := authz.NewSecret()
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	for i := len(authz.SecretPrefix); i < len(s); i++ {
		for j := 0; j < len(alphabet); j++ {
			if alphabet[j] == s[i] {
				continue
			}
			typo := s[:i] + string(alphabet[j]) + s[i+1:]
			if authz.ValidSecret(typo) {
				t.Fatalf("ValidSecret accepted %q, a typo of %q at %d", typo, s, i)
			}
		}
	}
}

func TestValidSecretRejectsMalformed(t *testing.T) {
	s := authz.NewSecret()
	for _, bad := range []string{
		"",
		s[:len(s)-1],             // truncated
		s + "A",                  // too long
		"sk-xx-" + s[6:],         // wrong prefix
		s[:10] + "-" + s[11:],    // outside the alphabet
		s[:10] + "\x00" + s[11:], // NUL
		strings.ToUpper(s),       // case matters
	} {
		if authz.ValidSecret(bad) {
			t.Errorf("ValidSecret(%q) = true", bad)
		}
	}
}

func TestSecretHintShowsOnlyTheEnd(t *testing.T) {
	s := authz.NewSecret()
	h := authz.SecretHint(s)
	if want := authz.SecretPrefix + "..." + s[len(s)-4:]; h != want {
		t.Fatalf("SecretHint = %q, want %q", h, want)
	}
}

func TestHashSecretMatchesSHA256OfAnyLength(t *testing.T) {
	long := strings.Repeat("x", 3*authz.SecretLen)
	if authz.HashSecret(long) == authz.HashSecret(long[:authz.SecretLen]) {
		t.Fatal("hashes of different strings collide")
	}
	s := authz.NewSecret()
	if authz.HashSecret(s) != authz.HashSecret(strings.Clone(s)) {
		t.Fatal("HashSecret is not deterministic")
	}
}

func TestSecretFunctionsDoNotAllocate(t *testing.T) {
	s := authz.NewSecret()
	allocs := testing.AllocsPerRun(100, func() {
		if !authz.ValidSecret(s) {
			t.Fatal("invalid")
		}
		_ = authz.HashSecret(s)
	})
	if allocs != 0 {
		t.Fatalf("ValidSecret+HashSecret allocate %v times per call, want 0", allocs)
	}
}

func TestIDs(t *testing.T) {
	a := authz.NewAccountID(testTime)
	k := authz.NewKeyID(testTime)
	if !authz.ValidAccountID(a) || authz.ValidKeyID(a) {
		t.Errorf("account id %q misclassified", a)
	}
	if !authz.ValidKeyID(k) || authz.ValidAccountID(k) {
		t.Errorf("key id %q misclassified", k)
	}
	later := authz.NewAccountID(testTime.Add(1e6))
	if !(a < later) {
		t.Errorf("ids do not sort by creation time: %q then %q", a, later)
	}
	for _, bad := range []string{"", "acct_", a + "0", a[:len(a)-1] + "I", a[:len(a)-1] + "a", "key_" + a[5:]} {
		if authz.ValidAccountID(bad) {
			t.Errorf("ValidAccountID(%q) = true", bad)
		}
	}
}

func TestIDsAreMonotonicWithinAMillisecond(t *testing.T) {
	prev := authz.NewKeyID(testTime)
	for range 10000 {
		id := authz.NewKeyID(testTime)
		if id <= prev || !authz.ValidKeyID(id) {
			t.Fatalf("NewKeyID gave %q after %q", id, prev)
		}
		prev = id
	}
}

func BenchmarkValidSecret(b *testing.B) {
	secrets := make([]string, 1024)
	for i := range secrets {
		secrets[i] = authz.NewSecret()
	}
	b.ResetTimer()
	for i := range b.N {
		if !authz.ValidSecret(secrets[i%len(secrets)]) {
			b.Fatal("a fresh secret is not valid")
		}
	}
}
