package bolt

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// Writes are group commits: update runs each writer's transaction function
// through bbolt's DB.Batch, which runs the functions of concurrent writers
// in one transaction, with one fsync, before any of them returns. So every
// write is durable when it is acknowledged, and many writers share a disk
// sync. Batch may run a function more than once (when another function of
// its batch fails, the others are run again), so transaction functions
// build their records afresh on each run and report what they changed
// instead of changing memory.
//
// Once its transaction has committed, a writer brings the index up to date
// by reading back the records it changed (syncIndex). Writers of several
// transactions may sync in any order: each sync reads the newest committed
// state, at the revision of its read transaction, and the index applies
// only states newer than the one it holds, so it never goes back.

// DefaultBatchDelay is how long a write waits for others to share its
// commit. bbolt's own default, 10 ms, holds many writers far below what a
// disk can sync (docs/benchmarks.md, "Writes").
const DefaultBatchDelay = time.Millisecond

// changed names the records a write changed whose state the index holds.
type changed struct {
	accounts []string // account ids
	keys     []string // key ids
}

// update runs fn in a shared write transaction and, once it has committed,
// syncs the index with what fn changed.
func (s *Store) update(ctx context.Context, fn func(tx *bbolt.Tx) (changed, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var ch changed
	err := s.db.Batch(func(tx *bbolt.Tx) error {
		var err error
		ch, err = fn(tx)
		return err
	})
	if err != nil {
		return dbError(err)
	}
	return s.syncIndex(ch)
}

// syncIndex copies the committed state of the records ch names, and of the
// accounts of the keys it names, into the index.
func (s *Store) syncIndex(ch changed) error {
	err := s.db.View(func(tx *bbolt.Tx) error {
		rev := revision(tx)
		keys := make([]*storagev1.KeyRecord, len(ch.keys))
		accounts := ch.accounts
		for i, id := range ch.keys {
			var err error
			if keys[i], err = getKey(tx.Bucket(bucketKeys), id); err != nil {
				return err
			}
			accounts = append(accounts, keys[i].AccountId)
		}
		// Accounts first: a new key must not be seen with an empty account.
		for _, id := range accounts {
			r, err := getAccount(tx.Bucket(bucketAccounts), id)
			if err == nil {
				err = s.idx.ApplyAccount(r, rev)
			}
			if err != nil {
				return err
			}
		}
		for _, r := range keys {
			if err := s.idx.ApplyKey(r, rev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bolt store: the write is committed, but reading it back failed: %w", dbError(err))
	}
	return nil
}

// hashTaken reports whether a key with hash h is stored, or was written
// earlier in tx. Uniqueness is decided inside the transaction, so a batch
// that bbolt rolls back and runs again sees only what really committed.
func hashTaken(tx *bbolt.Tx, h authz.KeyHash) bool {
	return tx.Bucket(bucketKeyHashes).Get(h[:]) != nil
}

// insertNewKey validates nk at now, checks that its account exists, and
// writes it as key id in write transaction tx, noting the new key in ch.
func (s *Store) insertNewKey(tx *bbolt.Tx, id string, nk *authz.NewKey, now time.Time, ch *changed) (*storagev1.KeyRecord, error) {
	r, err := record.NewKey(id, nk, now)
	if err != nil {
		return nil, err
	}
	if _, err := getAccount(tx.Bucket(bucketAccounts), nk.AccountID); err != nil {
		return nil, err
	}
	if err := insertKey(tx, r); err != nil {
		return nil, err
	}
	ch.keys = append(ch.keys, r.Id)
	return r, nil
}
