package bolt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// Import adds the records of d, new accounts with their keys and ledgers
// as record.NewImport makes them, in one transaction: all of them, or none
// when a write fails or an account cannot be added (an
// *record.ImportError then lists the accounts whose id is taken or whose
// keys' hashes are). It is meant for loading many keys at once: it writes
// in key order.
func (s *Store) Import(ctx context.Context, d record.Dump) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var rev int64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		rev = revision(tx)
		if err := checkImport(tx, d); err != nil {
			return err
		}
		return writeDump(tx, d)
	})
	if ie := (*record.ImportError)(nil); errors.As(err, &ie) {
		return err
	}
	if err != nil {
		return dbError(err)
	}
	for _, r := range d.Accounts {
		err = errors.Join(err, s.idx.ApplyAccount(r, rev))
	}
	for _, r := range d.Keys {
		err = errors.Join(err, s.idx.ApplyKey(r, rev))
	}
	if err != nil {
		return fmt.Errorf("bolt store: the import is committed, but indexing it failed: %w", err)
	}
	return nil
}

// checkImport lists, in an *record.ImportError, the accounts of d whose id
// is stored in tx or whose keys' hashes are.
func checkImport(tx *bbolt.Tx, d record.Dump) error {
	index := make(map[string]int, len(d.Accounts))
	failed := make(map[int]error)
	for i, r := range d.Accounts {
		index[r.Id] = i
		if tx.Bucket(bucketAccounts).Get([]byte(r.Id)) != nil {
			failed[i] = authz.Errorf(authz.EConflict, "account %s exists", r.Id)
		}
	}
	for _, r := range d.Keys {
		i, ok := index[r.AccountId]
		switch {
		case !ok:
			return fmt.Errorf("import: key %s belongs to account %s, which is not imported", r.Id, r.AccountId)
		case failed[i] == nil && hashTaken(tx, authz.KeyHash(r.Hash)):
			failed[i] = record.ErrHashTaken
		}
	}
	if len(failed) == 0 {
		return nil
	}
	ie := &record.ImportError{}
	for i, err := range failed {
		ie.Accounts = append(ie.Accounts, record.AccountError{Index: i, Err: err})
	}
	slices.SortFunc(ie.Accounts, func(a, b record.AccountError) int { return cmp.Compare(a.Index, b.Index) })
	return ie
}

// writeDump writes the records of d, and the indexes that go with them, in
// write transaction tx. Keys of d must have hashes that tx does not hold.
func writeDump(tx *bbolt.Tx, d record.Dump) error {
	accounts, keys, ledger := tx.Bucket(bucketAccounts), tx.Bucket(bucketKeys), tx.Bucket(bucketLedger)
	// Ids sort by creation time, so the records of a dump or an import
	// mostly sort after every stored one: full pages make a smaller file
	// and a faster load.
	for _, b := range []*bbolt.Bucket{accounts, keys, tx.Bucket(bucketAccountKeys), ledger} {
		b.FillPercent = 1
	}
	for _, r := range d.Accounts {
		if err := put(accounts, []byte(r.Id), r); err != nil {
			return err
		}
	}
	for _, r := range d.Keys {
		if len(r.Hash) != len(authz.KeyHash{}) {
			return fmt.Errorf("key %s has a %d-byte hash", r.Id, len(r.Hash))
		}
		if err := putKey(tx, r); err != nil {
			return err
		}
	}
	if err := putHashes(tx, d.Keys); err != nil {
		return err
	}
	for _, r := range d.Ledger {
		if err := put(ledger, ledgerKey(r.AccountId, r.Seq), r); err != nil {
			return err
		}
		if r.IdempotencyKey == "" {
			continue
		}
		if err := tx.Bucket(bucketIdempotency).Put(idempotencyKey(r.AccountId, r.IdempotencyKey), beUint64(r.Seq)); err != nil {
			return err
		}
	}
	return nil
}

// putHashes claims the hashes of keys in hash order: random hashes written
// in their own order would be inserted all over one ever-growing node, in
// time quadratic in the number of keys. Two keys with one hash are
// EConflict.
func putHashes(tx *bbolt.Tx, keys []*storagev1.KeyRecord) error {
	type hashed struct {
		prefix uint64 // the hash's first 8 bytes, for quick comparisons
		r      *storagev1.KeyRecord
	}
	byHash := make([]hashed, len(keys))
	for i, kr := range keys {
		byHash[i] = hashed{binary.BigEndian.Uint64(kr.Hash), kr}
	}
	slices.SortFunc(byHash, func(a, b hashed) int {
		return cmp.Or(cmp.Compare(a.prefix, b.prefix), bytes.Compare(a.r.Hash, b.r.Hash))
	})
	hashes := tx.Bucket(bucketKeyHashes)
	for i, h := range byHash {
		if i > 0 && bytes.Equal(byHash[i-1].r.Hash, h.r.Hash) {
			return record.ErrHashTaken
		}
		if err := hashes.Put(h.r.Hash, []byte(h.r.Id)); err != nil {
			return err
		}
	}
	return nil
}
