package record

import (
	"fmt"
	"time"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
)

// ImportAccount is an account to import, with its keys.
type ImportAccount struct {
	Name     string
	Balance  int64 // opening balance, at least zero
	Disabled bool
	Keys     []ImportKey
}

// ImportKey is a key to import. A store sees only its hash and hint, as
// with CreateKey.
type ImportKey struct {
	Name       string
	Hash       authz.KeyHash
	Hint       string
	ExpireTime time.Time // zero: never expires
}

// ImportError lists the accounts of an import that cannot be imported, by
// their position in it (in the ImportAccounts, or in the Dump's Accounts).
type ImportError struct {
	Accounts []AccountError
}

// AccountError is what is wrong with the account at Index of an import.
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

// ErrHashTaken is the error of a key whose hash another key holds.
var ErrHashTaken = authz.Errorf(authz.EConflict, "a key with this hash already exists")

// NewImport checks accounts at now and makes their records, with fresh
// ids: the accounts, their keys, and the LedgerOpen entry of each positive
// balance, for a store's Import. Invalid accounts, and keys whose hash an
// earlier key of the import has, are listed in an *ImportError.
func NewImport(accounts []ImportAccount, now time.Time) (Dump, error) {
	var d Dump
	var bad []AccountError
	seen := make(map[authz.KeyHash]bool)
	for i, a := range accounts {
		recs, err := newImportAccount(a, now, seen)
		if err != nil {
			bad = append(bad, AccountError{Index: i, Err: err})
			continue
		}
		d.Accounts = append(d.Accounts, recs.Accounts...)
		d.Keys = append(d.Keys, recs.Keys...)
		d.Ledger = append(d.Ledger, recs.Ledger...)
	}
	if bad != nil {
		return Dump{}, &ImportError{Accounts: bad}
	}
	return d, nil
}

// newImportAccount makes the records of one account, noting its keys'
// hashes in seen.
func newImportAccount(a ImportAccount, now time.Time, seen map[authz.KeyHash]bool) (Dump, error) {
	if err := (authz.NewAccount{Name: a.Name, Balance: a.Balance}).Validate(); err != nil {
		return Dump{}, err
	}
	r := &storagev1.AccountRecord{
		Id:         authz.NewAccountID(now),
		Name:       a.Name,
		Disabled:   a.Disabled,
		CreateTime: now.UnixNano(),
		UpdateTime: now.UnixNano(),
	}
	d := Dump{Accounts: []*storagev1.AccountRecord{r}}
	if a.Balance > 0 {
		e, err := ApplyChange(r, authz.BalanceChange{Kind: authz.LedgerOpen, Amount: a.Balance}, r.CreateTime)
		if err != nil {
			return Dump{}, err
		}
		d.Ledger = append(d.Ledger, e)
	}
	for j, k := range a.Keys {
		nk := authz.NewKey{AccountID: r.Id, Name: k.Name, ExpireTime: k.ExpireTime, Hash: k.Hash, Hint: k.Hint}
		kr, err := NewKey(authz.NewKeyID(now), &nk, now)
		if err == nil && seen[k.Hash] {
			err = authz.Errorf(authz.EConflict, "two imported keys have the same hash")
		}
		if err != nil {
			return Dump{}, fmt.Errorf("key %d: %w", j+1, err)
		}
		seen[k.Hash] = true
		d.Keys = append(d.Keys, kr)
	}
	return d, nil
}
