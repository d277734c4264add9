package bolt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.etcd.io/bbolt"

	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// Dump flushes last-used times, then reads every record of the store in
// one transaction.
func (s *Store) Dump(ctx context.Context) (record.Dump, error) {
	var d record.Dump
	if err := s.FlushLastUsed(); err != nil {
		return d, err
	}
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		err := tx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
			r, err := record.Decode[storagev1.AccountRecord](v)
			d.Accounts = append(d.Accounts, r)
			return err
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			r, err := record.Decode[storagev1.KeyRecord](v)
			d.Keys = append(d.Keys, r)
			return err
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketLedger).ForEach(func(_, v []byte) error {
			r, err := record.Decode[storagev1.LedgerRecord](v)
			d.Ledger = append(d.Ledger, r)
			return err
		})
	})
	return d, err
}

// Restore creates a database at path, which must not exist, holding the
// records of d, written in one transaction.
func Restore(path string, d record.Dump) (err error) {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore into %s: the file exists (or cannot be checked: %v)", path, err)
	}
	db, err := openBolt(path, 0)
	if err != nil {
		return openError(path, 0, err)
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	return db.Update(func(tx *bbolt.Tx) error {
		if err := initSchema(tx); err != nil {
			return err
		}
		for _, r := range d.Accounts {
			if err := put(tx.Bucket(bucketAccounts), []byte(r.Id), r); err != nil {
				return err
			}
		}
		for _, r := range d.Keys {
			if err := insertKey(tx, r); err != nil {
				return err
			}
		}
		for _, r := range d.Ledger {
			if err := put(tx.Bucket(bucketLedger), ledgerKey(r.AccountId, r.Seq), r); err != nil {
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
	})
}
