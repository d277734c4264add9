package bolt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// Dump flushes last-used times, then reads every record of the store in
// one transaction.
func (s *Store) Dump(ctx context.Context) (record.Dump, error) {
	if err := s.FlushLastUsed(ctx); err != nil {
		return record.Dump{}, err
	}
	var d record.Dump
	err := s.view(ctx, func(tx *bbolt.Tx) (err error) {
		d, err = readDump(tx)
		return err
	})
	return d, err
}

// Verify reads every record and index of the store in one transaction and
// checks that they agree (record.Verify).
func (s *Store) Verify(ctx context.Context) error {
	return s.view(ctx, func(tx *bbolt.Tx) error {
		d, err := readDump(tx)
		if err != nil {
			return err
		}
		ix := record.NewIndexes()
		err = tx.Bucket(bucketKeyHashes).ForEach(func(k, v []byte) error {
			ix.Hashes[authz.KeyHash(k)] = string(v)
			return nil
		})
		if err != nil {
			return err
		}
		const idLen = authz.AccountIDLen
		err = tx.Bucket(bucketAccountKeys).ForEach(func(k, _ []byte) error {
			ix.AccountKeys[record.AccountKey{AccountID: string(k[:min(idLen, len(k))]), KeyID: string(k[min(idLen, len(k)):])}] = true
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketIdempotency).ForEach(func(k, v []byte) error {
			seq, _ := parseBEUint64(v) // a bad value names entry 0, which Verify reports
			ix.Idempotency[record.IdempotencyKey{AccountID: string(k[:min(idLen, len(k))]), Key: string(k[min(idLen+1, len(k)):])}] = seq
			return nil
		})
		if err != nil {
			return err
		}
		return record.Verify(d, ix)
	})
}

// readDump reads every record in tx.
func readDump(tx *bbolt.Tx) (record.Dump, error) {
	d := record.Dump{Revision: revision(tx)}
	err := tx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
		r, err := record.Decode[storagev1.AccountRecord](v)
		d.Accounts = append(d.Accounts, r)
		return err
	})
	if err != nil {
		return d, err
	}
	err = tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
		r, err := record.Decode[storagev1.KeyRecord](v)
		d.Keys = append(d.Keys, r)
		return err
	})
	if err != nil {
		return d, err
	}
	err = tx.Bucket(bucketLedger).ForEach(func(_, v []byte) error {
		r, err := record.Decode[storagev1.LedgerRecord](v)
		d.Ledger = append(d.Ledger, r)
		return err
	})
	return d, err
}

// Restore creates a database at path, which must not exist, holding the
// records of d, written in one transaction.
func Restore(path string, d record.Dump) (err error) {
	switch _, err := os.Stat(path); {
	case err == nil:
		return fmt.Errorf("restore into %s: the file exists", path)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("restore into %s: %w", path, err)
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
		return writeDump(tx, d)
	})
}
