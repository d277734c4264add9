package authz_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
)

func TestWellFormedToken(t *testing.T) {
	good := authz.NewSecret()
	typo := []byte(good)
	typo[len(typo)-1] ^= 1 // another base62 character
	for _, c := range []struct {
		token string
		want  bool
	}{
		{good, true},
		{string(typo), false}, // keygate's prefix: checksum-checked
		{"sk-kg-" + strings.Repeat("a", 40), false},
		{"sk-proj-abcdefghijklmnopqrstuvwxyz012345", true}, // another gateway's key
		{"AKIAabcdefghij/klmnop+qr~s.t_u==", true},
		{"hunter2", false},                  // too short to be anyone's key
		{strings.Repeat("a", 19), false},    // one short
		{strings.Repeat("a", 20), true},     // the shortest
		{strings.Repeat("a", 256), true},    // the longest
		{strings.Repeat("a", 257), false},   // one too long
		{"abcdefghij klmnopqrstuvw", false}, // a space: two values joined
		{"abcdefghij,klmnopqrstuvw", false}, // a comma: two headers joined
		{"abcdefghij=klmnopqrstuvw", false}, // '=' only at the end
		{"====================", false},     // padding alone
		{"abcdefghijklmnopqrst\xff", false}, // not ASCII
	} {
		if got := authz.WellFormedToken(c.token); got != c.want {
			t.Errorf("WellFormedToken(%.30q) = %v, want %v", c.token, got, c.want)
		}
	}
}
