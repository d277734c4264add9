package bolt

import (
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// TestIndexCollisions fills an index with keys that share where their
// search starts and their slots' tags, and that differ only past them, so
// that only the full hash tells them apart, across the table's growth.
func TestIndexCollisions(t *testing.T) {
	x := newIndex()
	account, _ := x.addAccount(authz.NewAccountID(time.Now()))
	hash := func(i int) authz.KeyHash {
		var h authz.KeyHash
		h[0] = byte(i % 3) // three starting points, all with the same tag
		h[30], h[31] = byte(i), byte(i>>8)
		return h
	}
	const n = 3000
	ids := make([]string, n)
	for i := range n {
		ids[i] = authz.NewKeyID(time.Now())
		x.addKey(hash(i), ids[i], account, func(*keyEntry) {})
	}
	for i := range n {
		e := x.get(hash(i))
		if e == nil || e.keyID() != ids[i] {
			t.Fatalf("key %d: got %v", i, e)
		}
	}
	missing := hash(n)
	if x.get(missing) != nil {
		t.Error("found a key that was never added")
	}
	if got := x.size(); got != n {
		t.Errorf("size %d, want %d", got, n)
	}
}
