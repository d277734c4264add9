package bolt

import (
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
	"github.com/keygate/keygate/store/storetest"
)

// seed writes accounts and keys straight into the database at path, in
// large transactions, and returns the keys' hashes.
func seed(b *testing.B, path string, accounts, keys int) []authz.KeyHash {
	b.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	ids := make([]string, accounts)
	hashes := make([]authz.KeyHash, keys)
	const batch = 100_000
	for start := 0; start < keys; start += batch {
		err := s.db.Update(func(tx *bbolt.Tx) error {
			if start == 0 {
				for i := range ids {
					ids[i] = authz.NewAccountID(now)
					r := &storagev1.AccountRecord{Id: ids[i], Name: "bench", Balance: 1000, CreateTime: now.UnixNano()}
					if err := put(tx.Bucket(bucketAccounts), []byte(ids[i]), r); err != nil {
						return err
					}
				}
			}
			for i := start; i < min(start+batch, keys); i++ {
				hashes[i] = sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
				nk := authz.NewKey{AccountID: ids[i%accounts], Name: "bench", Hash: hashes[i], Hint: "sk-kg-...abcd"}
				r, err := record.NewKey(authz.NewKeyID(now), &nk, now)
				if err != nil {
					return err
				}
				if err := insertKey(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return hashes
}

// BenchmarkLookupKey looks keys up in an index of a million keys.
func BenchmarkLookupKey(b *testing.B) {
	const keys = 1_000_000
	path := filepath.Join(b.TempDir(), "keygate.db")
	hashes := seed(b, path, keys/10, keys)

	heap, start := storetest.HeapInUse(), time.Now()
	s := openTest(b, path, Options{FlushInterval: time.Hour})
	b.Logf("Open loaded %d keys in %s; the index takes %d bytes a key",
		s.Stats().Keys, time.Since(start).Round(time.Millisecond), (storetest.HeapInUse()-heap)/keys)

	storetest.BenchmarkLookups(b, s, hashes)
}
