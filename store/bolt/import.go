package bolt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// ImportAccount is an account to import, with its keys.
type ImportAccount struct {
	Name     string
	Balance  int64 // opening balance, at least zero
	Disabled bool
	Keys     []ImportKey
}

// ImportKey is a key to import. The store sees only its hash and hint, as
// with CreateKey.
type ImportKey struct {
	Name       string
	Hash       authz.KeyHash
	Hint       string
	ExpireTime time.Time // zero: never expires
}

// ImportError lists every invalid account of an Import, by its position.
type ImportError struct {
	Accounts []AccountError
}

// AccountError is what is wrong with the account at Index of an Import.
type AccountError struct {
	Index int
	Err   error
}

func (e *ImportError) Error() string {
	first := e.Accounts[0]
	msg := fmt.Sprintf("import: account %d: %v", first.Index, first.Err)
	if n := len(e.Accounts) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return msg
}

// Unwrap returns the first account's error, for errors.Is and errors.As.
func (e *ImportError) Unwrap() error { return e.Accounts[0].Err }

// Import adds accounts and their keys in one transaction: all of them, or
// none when any is invalid (an *ImportError then says which) or a write
// fails. It returns the new accounts' ids, in order. It is meant for
// loading many keys at once: it writes in key order, and at several
// hundred thousand keys a second into an empty store.
func (s *Store) Import(ctx context.Context, accounts []ImportAccount) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	ids := make([]string, len(accounts))
	accountRecs := make([]*storagev1.AccountRecord, len(accounts))
	var keyRecs []*storagev1.KeyRecord
	var rev int64
	err := s.db.Update(func(tx *bbolt.Tx) error {
		rev = revision(tx)
		if err := s.checkImport(tx, accounts, now); err != nil {
			return err
		}
		accountsB, keys, accountKeys := tx.Bucket(bucketAccounts), tx.Bucket(bucketKeys), tx.Bucket(bucketAccountKeys)
		// New ids sort after every stored one, so the writes are appends:
		// full pages make a smaller file and a faster load.
		for _, b := range []*bbolt.Bucket{accountsB, keys, accountKeys} {
			b.FillPercent = 1
		}
		for i, a := range accounts {
			r := &storagev1.AccountRecord{
				Id:         authz.NewAccountID(now),
				Name:       a.Name,
				Disabled:   a.Disabled,
				CreateTime: now.UnixNano(),
				UpdateTime: now.UnixNano(),
			}
			if a.Balance > 0 {
				if _, err := appendLedger(tx, r, authz.BalanceChange{Kind: authz.LedgerOpen, Amount: a.Balance}, r.CreateTime); err != nil {
					return err
				}
			}
			if err := put(accountsB, []byte(r.Id), r); err != nil {
				return err
			}
			ids[i], accountRecs[i] = r.Id, r
			for j := range a.Keys {
				nk := authz.NewKey{AccountID: r.Id, Name: a.Keys[j].Name, ExpireTime: a.Keys[j].ExpireTime, Hash: a.Keys[j].Hash, Hint: a.Keys[j].Hint}
				kr, err := record.NewKey(authz.NewKeyID(now), &nk, now)
				if err != nil {
					return err
				}
				if err := putKey(tx, kr); err != nil {
					return err
				}
				keyRecs = append(keyRecs, kr)
			}
		}
		// Hashes are random: written in their own order they would be
		// inserted all over one ever-growing node, in time quadratic in
		// the number of keys (100,000 keys took 7.7 s).
		type hashed struct {
			prefix uint64 // the hash's first 8 bytes, for quick comparisons
			r      *storagev1.KeyRecord
		}
		byHash := make([]hashed, len(keyRecs))
		for i, kr := range keyRecs {
			byHash[i] = hashed{binary.BigEndian.Uint64(kr.Hash), kr}
		}
		slices.SortFunc(byHash, func(a, b hashed) int {
			return cmp.Or(cmp.Compare(a.prefix, b.prefix), bytes.Compare(a.r.Hash, b.r.Hash))
		})
		hashes := tx.Bucket(bucketKeyHashes)
		for _, h := range byHash {
			if err := hashes.Put(h.r.Hash, []byte(h.r.Id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			return nil, err
		}
		return nil, dbError(err)
	}
	for _, r := range accountRecs {
		err = errors.Join(err, s.idx.ApplyAccount(r, rev))
	}
	for _, r := range keyRecs {
		err = errors.Join(err, s.idx.ApplyKey(r, rev))
	}
	if err != nil {
		return nil, fmt.Errorf("bolt store: the import is committed, but indexing it failed: %w", err)
	}
	return ids, nil
}

// checkImport validates accounts at now, and that no two keys, imported or
// stored, share a hash, in write transaction tx.
func (s *Store) checkImport(tx *bbolt.Tx, accounts []ImportAccount, now time.Time) error {
	var bad []AccountError
	seen := make(map[authz.KeyHash]struct{})
	// The keys' account is not stored yet: validate them with a stand-in id.
	standIn := authz.NewAccountID(now)
	for i, a := range accounts {
		err := authz.ValidateName("account name", a.Name)
		if err == nil && a.Balance < 0 {
			err = authz.Errorf(authz.EInvalid, "opening balance must not be negative, got %d", a.Balance)
		}
		for j := 0; err == nil && j < len(a.Keys); j++ {
			k := &a.Keys[j]
			nk := authz.NewKey{AccountID: standIn, Name: k.Name, ExpireTime: k.ExpireTime, Hash: k.Hash, Hint: k.Hint}
			_, err = record.NewKey("", &nk, now)
			if err == nil && hashTaken(tx, k.Hash) {
				err = errHashTaken
			}
			if _, dup := seen[k.Hash]; err == nil && dup {
				err = authz.Errorf(authz.EConflict, "two imported keys have the same hash")
			}
			seen[k.Hash] = struct{}{}
			if err != nil {
				err = fmt.Errorf("key %d: %w", j+1, err) // numbered from 1, as people count
			}
		}
		if err != nil {
			bad = append(bad, AccountError{Index: i, Err: err})
		}
	}
	if bad != nil {
		return &ImportError{Accounts: bad}
	}
	return nil
}
