package bolt

import (
	"context"
	"fmt"
	"strconv"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// CreateAccount creates an active account. A positive opening balance is
// recorded as a LedgerOpen entry with seq 1.
func (s *Store) CreateAccount(ctx context.Context, name string, openingBalance int64) (authz.Account, error) {
	if err := (authz.NewAccount{Name: name, Balance: openingBalance}).Validate(); err != nil {
		return authz.Account{}, err
	}
	now := s.now()
	id := authz.NewAccountID(now)
	var r *storagev1.AccountRecord
	err := s.update(ctx, func(tx *bbolt.Tx) (changed, error) {
		r = &storagev1.AccountRecord{
			Id:         id,
			Name:       name,
			CreateTime: now.UnixNano(),
			UpdateTime: now.UnixNano(),
		}
		if openingBalance > 0 {
			if _, err := appendLedger(tx, r, authz.BalanceChange{Kind: authz.LedgerOpen, Amount: openingBalance}, r.CreateTime); err != nil {
				return changed{}, err
			}
		}
		if err := put(tx.Bucket(bucketAccounts), []byte(r.Id), r); err != nil {
			return changed{}, err
		}
		return changed{accounts: []string{id}}, nil
	})
	if err != nil {
		return authz.Account{}, err
	}
	return record.Account(r), nil
}

// Account returns the account with the given id.
func (s *Store) Account(ctx context.Context, id string) (authz.Account, error) {
	if err := authz.ValidateAccountID(id); err != nil {
		return authz.Account{}, err
	}
	var a authz.Account
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		r, err := getAccount(tx.Bucket(bucketAccounts), id)
		if err != nil {
			return err
		}
		a = record.Account(r)
		return nil
	})
	return a, err
}

// Accounts lists accounts in creation order. The page token is the id of
// the last account of the previous page.
func (s *Store) Accounts(ctx context.Context, page authz.Page) ([]authz.Account, string, error) {
	if err := page.Validate(); err != nil {
		return nil, "", err
	}
	size := page.Limit()
	var after []byte
	if page.Token != "" {
		if !authz.ValidAccountID(page.Token) {
			return nil, "", record.BadToken(page.Token)
		}
		after = []byte(page.Token)
	}
	var as []authz.Account
	var more bool
	err := s.view(ctx, func(tx *bbolt.Tx) (err error) {
		more, err = scan(tx.Bucket(bucketAccounts), nil, after, size, func(_, v []byte) error {
			r, err := record.Decode[storagev1.AccountRecord](v)
			if err != nil {
				return err
			}
			as = append(as, record.Account(r))
			return nil
		})
		return err
	})
	if err != nil || !more {
		return as, "", err
	}
	return as, as[len(as)-1].ID, nil
}

// SetAccountStatus enables or disables an account, and with it all its keys.
func (s *Store) SetAccountStatus(ctx context.Context, id string, status authz.AccountStatus) (authz.Account, error) {
	if err := authz.ValidateAccountID(id); err != nil {
		return authz.Account{}, err
	}
	if err := status.Validate(); err != nil {
		return authz.Account{}, err
	}
	disabled := status == authz.AccountDisabled
	var r *storagev1.AccountRecord
	err := s.update(ctx, func(tx *bbolt.Tx) (changed, error) {
		b := tx.Bucket(bucketAccounts)
		var err error
		if r, err = getAccount(b, id); err != nil || r.Disabled == disabled {
			return changed{}, err
		}
		r.Disabled = disabled
		r.UpdateTime = s.now().UnixNano()
		if err := put(b, []byte(id), r); err != nil {
			return changed{}, err
		}
		return changed{accounts: []string{id}}, nil
	})
	if err != nil {
		return authz.Account{}, err
	}
	return record.Account(r), nil
}

// ChangeBalance applies a credit or debit. A debit's KeyID must name a key
// of the account (else EInvalid). A change that would take the balance out
// of the int64 range is EInvalid and changes nothing.
func (s *Store) ChangeBalance(ctx context.Context, c authz.BalanceChange) (authz.LedgerEntry, error) {
	if err := c.Validate(); err != nil {
		return authz.LedgerEntry{}, err
	}
	var entry *storagev1.LedgerRecord
	err := s.update(ctx, func(tx *bbolt.Tx) (changed, error) {
		accounts := tx.Bucket(bucketAccounts)
		r, err := getAccount(accounts, c.AccountID)
		if err != nil {
			return changed{}, err
		}
		if c.IdempotencyKey != "" {
			if entry, err = replay(tx, c); entry != nil || err != nil {
				return changed{}, err
			}
		}
		if c.KeyID != "" && tx.Bucket(bucketAccountKeys).Get(accountKeyKey(c.AccountID, c.KeyID)) == nil {
			return changed{}, authz.Errorf(authz.EInvalid, "%s is not a key of account %s", c.KeyID, c.AccountID)
		}
		if entry, err = appendLedger(tx, r, c, s.now().UnixNano()); err != nil {
			return changed{}, err
		}
		if err := put(accounts, []byte(r.Id), r); err != nil {
			return changed{}, err
		}
		return changed{accounts: []string{r.Id}}, nil
	})
	if err != nil {
		return authz.LedgerEntry{}, err
	}
	return record.Entry(entry), nil
}

// replay returns the entry that c's idempotency key recorded, nil if the
// key is new, or EConflict if the entry is not the same change as c.
func replay(tx *bbolt.Tx, c authz.BalanceChange) (*storagev1.LedgerRecord, error) {
	seq := tx.Bucket(bucketIdempotency).Get(idempotencyKey(c.AccountID, c.IdempotencyKey))
	if seq == nil {
		return nil, nil
	}
	var v []byte
	if n, ok := parseBEUint64(seq); ok {
		v = tx.Bucket(bucketLedger).Get(ledgerKey(c.AccountID, n))
	}
	if v == nil {
		return nil, fmt.Errorf("corrupt: idempotency key %q of account %s names no ledger entry", c.IdempotencyKey, c.AccountID)
	}
	r, err := record.Decode[storagev1.LedgerRecord](v)
	if err != nil {
		return nil, err
	}
	return r, record.Replayed(r, c)
}

// appendLedger applies c to the account r (which the caller then writes)
// and records it in the ledger and, if it has one, under its idempotency key.
func appendLedger(tx *bbolt.Tx, r *storagev1.AccountRecord, c authz.BalanceChange, now int64) (*storagev1.LedgerRecord, error) {
	e, err := record.ApplyChange(r, c, now)
	if err != nil {
		return nil, err
	}
	if err := put(tx.Bucket(bucketLedger), ledgerKey(r.Id, e.Seq), e); err != nil {
		return nil, err
	}
	if c.IdempotencyKey == "" {
		return e, nil
	}
	return e, tx.Bucket(bucketIdempotency).Put(idempotencyKey(r.Id, c.IdempotencyKey), beUint64(e.Seq))
}

// Ledger lists an account's entries, oldest first. The page token is the
// seq of the last entry of the previous page.
func (s *Store) Ledger(ctx context.Context, accountID string, page authz.Page) ([]authz.LedgerEntry, string, error) {
	if err := authz.ValidateAccountID(accountID); err != nil {
		return nil, "", err
	}
	if err := page.Validate(); err != nil {
		return nil, "", err
	}
	size := page.Limit()
	var after []byte
	if page.Token != "" {
		seq, err := strconv.ParseUint(page.Token, 10, 64)
		if err != nil || seq == 0 {
			return nil, "", record.BadToken(page.Token)
		}
		after = ledgerKey(accountID, seq)
	}
	var es []authz.LedgerEntry
	var more bool
	err := s.view(ctx, func(tx *bbolt.Tx) (err error) {
		if _, err := getAccount(tx.Bucket(bucketAccounts), accountID); err != nil {
			return err
		}
		more, err = scan(tx.Bucket(bucketLedger), []byte(accountID), after, size, func(_, v []byte) error {
			r, err := record.Decode[storagev1.LedgerRecord](v)
			if err != nil {
				return err
			}
			es = append(es, record.Entry(r))
			return nil
		})
		return err
	})
	if err != nil || !more {
		return es, "", err
	}
	return es, strconv.FormatUint(es[len(es)-1].Seq, 10), nil
}

func getAccount(b *bbolt.Bucket, id string) (*storagev1.AccountRecord, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, authz.Errorf(authz.ENotFound, "account %s not found", id)
	}
	return record.Decode[storagev1.AccountRecord](v)
}
