package keyindex

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/storetest"
)

// BenchmarkLookupKey looks keys up in an index of a million keys, ten to
// an account, filled directly: the stores' benchmark of the same name
// without a store around it.
func BenchmarkLookupKey(b *testing.B) {
	const keys = 1_000_000
	now := time.Now()
	hashes := make([]authz.KeyHash, keys)
	for i := range hashes {
		hashes[i] = hashOf(i)
	}
	accounts := make([]string, keys/10)
	for i := range accounts {
		accounts[i] = authz.NewAccountID(now)
	}
	records := make([]*storagev1.KeyRecord, keys)
	for i := range records {
		records[i] = keyRecord(authz.NewKeyID(now), accounts[i%len(accounts)], hashes[i])
	}
	heap := storetest.HeapInUse()
	x := New()
	for _, id := range accounts {
		if err := x.ApplyAccount(&storagev1.AccountRecord{Id: id, Balance: 1000}, 1); err != nil {
			b.Fatal(err)
		}
	}
	for _, r := range records {
		apply(b, x, r, 2)
	}
	b.Logf("the index takes %d bytes a key", (storetest.HeapInUse()-heap)/keys)

	storetest.BenchmarkLookups(b, keyIndex{x}, hashes)
	runtime.KeepAlive(records)
}

// keyIndex is an Index as an authz.KeyIndex.
type keyIndex struct{ *Index }

func (x keyIndex) LookupKey(_ context.Context, h authz.KeyHash) (authz.IndexedKey, bool, error) {
	c, ok := x.Lookup(h)
	return c, ok, nil
}
