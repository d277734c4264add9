package record

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
)

// Indexes is what a store's secondary indexes say, read at the revision of
// a Dump, for Verify. Every store keeps these three.
type Indexes struct {
	Hashes      map[authz.KeyHash]string  // a key's hash -> the id of the key that claims it
	AccountKeys map[AccountKey]bool       // the keys listed under each account
	Idempotency map[IdempotencyKey]uint64 // an idempotency key -> the seq of the entry it names
}

// AccountKey is one listing of a key under an account.
type AccountKey struct{ AccountID, KeyID string }

// IdempotencyKey is an idempotency key of an account.
type IdempotencyKey struct{ AccountID, Key string }

// NewIndexes returns empty Indexes, ready to be filled.
func NewIndexes() Indexes {
	return Indexes{
		Hashes:      map[authz.KeyHash]string{},
		AccountKeys: map[AccountKey]bool{},
		Idempotency: map[IdempotencyKey]uint64{},
	}
}

// Verify checks that the records of d and the indexes ix agree with each
// other, as every write of a store leaves them: each key belongs to a
// stored account, its hash is claimed by it alone and it is listed under
// its account; each claim and listing names such a key; each account's
// ledger counts from 1 to its seq, each entry's balance is the running sum
// and the sum is the account's balance; each idempotency key names an
// entry that carries it, and each entry's key is indexed. It returns every
// disagreement, joined.
func Verify(d Dump, ix Indexes) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	accounts := make(map[string]*storagev1.AccountRecord, len(d.Accounts))
	for _, a := range d.Accounts {
		if accounts[a.Id] != nil {
			bad("account %s: stored twice", a.Id)
		}
		accounts[a.Id] = a
	}
	keys := make(map[string]*storagev1.KeyRecord, len(d.Keys))
	for _, k := range d.Keys {
		h, ok := hashOf(k)
		switch {
		case keys[k.Id] != nil:
			bad("key %s: stored twice", k.Id)
		case accounts[k.AccountId] == nil:
			bad("key %s: account %s does not exist", k.Id, k.AccountId)
		case !ok:
			bad("key %s: its hash is %d bytes long", k.Id, len(k.Hash))
		case ix.Hashes[h] != k.Id:
			bad("key %s: its hash is not claimed by it", k.Id)
		case !ix.AccountKeys[AccountKey{k.AccountId, k.Id}]:
			bad("key %s: not listed under account %s", k.Id, k.AccountId)
		}
		keys[k.Id] = k
	}
	for h, id := range ix.Hashes {
		if k := keys[id]; k == nil || string(k.Hash) != string(h[:]) {
			bad("hash %x: claimed by key %s, which does not exist or has another hash", h[:8], id)
		}
	}
	for ak := range ix.AccountKeys {
		if k := keys[ak.KeyID]; k == nil || k.AccountId != ak.AccountID {
			bad("key %s listed under account %s: no such key of the account", ak.KeyID, ak.AccountID)
		}
	}

	ledgers := map[string][]*storagev1.LedgerRecord{}
	for _, e := range d.Ledger {
		ledgers[e.AccountId] = append(ledgers[e.AccountId], e)
		if e.IdempotencyKey != "" && ix.Idempotency[IdempotencyKey{e.AccountId, e.IdempotencyKey}] != e.Seq {
			bad("account %s: entry %d's idempotency key %q is not indexed to it", e.AccountId, e.Seq, e.IdempotencyKey)
		}
	}
	for id := range ledgers {
		if accounts[id] == nil {
			bad("ledger of account %s: the account does not exist", id)
		}
	}
	for id, a := range accounts {
		es := ledgers[id]
		slices.SortFunc(es, func(a, b *storagev1.LedgerRecord) int { return cmp.Compare(a.Seq, b.Seq) })
		verifyLedger(id, a, es, bad)
	}
	for ik, seq := range ix.Idempotency {
		es := ledgers[ik.AccountID]
		if seq == 0 || seq > uint64(len(es)) || es[seq-1].Seq != seq || es[seq-1].IdempotencyKey != ik.Key {
			bad("idempotency key %q of %s: entry %d does not carry it", ik.Key, ik.AccountID, seq)
		}
	}
	return errors.Join(errs...)
}

// verifyLedger checks the ledger es of account a, in seq order.
func verifyLedger(id string, a *storagev1.AccountRecord, es []*storagev1.LedgerRecord, bad func(string, ...any)) {
	var sum int64
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			bad("account %s: ledger entry %d is missing", id, i+1)
			return
		}
		if e.Kind == storagev1.LedgerRecord_KIND_DEBIT {
			sum -= e.Amount
		} else {
			sum += e.Amount
		}
		if e.BalanceAfter != sum {
			bad("account %s: ledger entry %d says balance %d, the entries sum to %d", id, e.Seq, e.BalanceAfter, sum)
		}
	}
	if uint64(len(es)) != a.LedgerSeq {
		bad("account %s: the ledger has %d entries, the account counts %d", id, len(es), a.LedgerSeq)
	}
	if sum != a.Balance {
		bad("account %s: balance %d, the ledger sums to %d", id, a.Balance, sum)
	}
}

// hashOf returns the hash of a key record, and whether it has the right
// length.
func hashOf(r *storagev1.KeyRecord) (authz.KeyHash, bool) {
	var h authz.KeyHash
	return h, copy(h[:], r.Hash) == len(h) && len(r.Hash) == len(h)
}
