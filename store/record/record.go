// Package record holds the rules that every keygate store applies to its
// stored records (the keygate.storage.v1 messages): converting them to and
// from authz types, applying a balance change, checking a replayed one, and
// sizing pages. Stores keep records however their engine likes; this package
// makes them agree on what the records mean.
package record

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
)

var maxTime = time.Unix(0, math.MaxInt64)

// UnixNano returns t in Unix nanoseconds (0 for the zero time) and whether t
// fits in a record: records hold times from 1970 to 2262.
func UnixNano(t time.Time) (int64, bool) {
	switch {
	case t.IsZero():
		return 0, true
	case t.Before(time.Unix(0, 0)) || t.After(maxTime):
		return 0, false
	}
	return t.UnixNano(), true
}

// Time is the inverse of UnixNano, in UTC.
func Time(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Account converts a stored account.
func Account(r *storagev1.AccountRecord) authz.Account {
	status := authz.AccountActive
	if r.Disabled {
		status = authz.AccountDisabled
	}
	return authz.Account{
		ID:         r.Id,
		Name:       r.Name,
		Balance:    r.Balance,
		Status:     status,
		CreateTime: Time(r.CreateTime),
		UpdateTime: Time(r.UpdateTime),
	}
}

// Key converts a stored key.
func Key(r *storagev1.KeyRecord) authz.Key {
	k := authz.Key{
		ID:           r.Id,
		AccountID:    r.AccountId,
		Name:         r.Name,
		Hint:         r.Hint,
		CreateTime:   Time(r.CreateTime),
		ExpireTime:   Time(r.ExpireTime),
		RevokeTime:   Time(r.RevokeTime),
		LastUsedTime: Time(r.LastUsedTime),
		ReplacedBy:   r.ReplacedBy,
	}
	copy(k.Hash[:], r.Hash)
	return k
}

// NewKey returns the record of a key with the given id created at now. It
// checks nk at now, and that its expiry fits in a record.
func NewKey(id string, nk *authz.NewKey, now time.Time) (*storagev1.KeyRecord, error) {
	if err := nk.Validate(now); err != nil {
		return nil, err
	}
	expire, ok := UnixNano(nk.ExpireTime)
	if !ok {
		return nil, authz.Errorf(authz.EInvalid, "expire time %s is too far in the future", nk.ExpireTime.UTC().Format(time.RFC3339))
	}
	return &storagev1.KeyRecord{
		Id:         id,
		AccountId:  nk.AccountID,
		Name:       nk.Name,
		Hash:       nk.Hash[:],
		Hint:       nk.Hint,
		CreateTime: now.UnixNano(),
		ExpireTime: expire,
	}, nil
}

// Rotate checks that the key r may be rotated at now and marks it replaced
// by newID: revoked at once when grace is zero, else expiring after grace
// (keeping an earlier expiry). It changes r only when it returns nil.
func Rotate(r *storagev1.KeyRecord, newID string, grace time.Duration, now time.Time) error {
	if s := Key(r).State(now); s != authz.KeyActive {
		return authz.Errorf(authz.EConflict, "key %s is %s and cannot be rotated", r.Id, s)
	}
	if r.ReplacedBy != "" {
		return authz.Errorf(authz.EConflict, "key %s has already been rotated: it is replaced by %s", r.Id, r.ReplacedBy)
	}
	if grace == 0 {
		r.RevokeTime = now.UnixNano()
	} else {
		end, ok := UnixNano(now.Add(grace))
		if !ok {
			return authz.Errorf(authz.EInvalid, "grace period %s is too long", grace)
		}
		if r.ExpireTime == 0 || end < r.ExpireTime {
			r.ExpireTime = end
		}
	}
	r.ReplacedBy = newID
	return nil
}

// ledgerKinds maps authz ledger kinds to stored ones.
var ledgerKinds = [...]storagev1.LedgerRecord_Kind{
	authz.LedgerOpen:   storagev1.LedgerRecord_KIND_OPEN,
	authz.LedgerCredit: storagev1.LedgerRecord_KIND_CREDIT,
	authz.LedgerDebit:  storagev1.LedgerRecord_KIND_DEBIT,
}

// Entry converts a stored ledger entry.
func Entry(r *storagev1.LedgerRecord) authz.LedgerEntry {
	var kind authz.LedgerKind
	for k, rk := range ledgerKinds {
		if rk == r.Kind && rk != storagev1.LedgerRecord_KIND_UNSPECIFIED {
			kind = authz.LedgerKind(k)
		}
	}
	return authz.LedgerEntry{
		AccountID:      r.AccountId,
		Seq:            r.Seq,
		Kind:           kind,
		Amount:         r.Amount,
		BalanceAfter:   r.BalanceAfter,
		IdempotencyKey: r.IdempotencyKey,
		KeyID:          r.KeyId,
		CreateTime:     Time(r.CreateTime),
	}
}

// ApplyChange applies c (or an opening balance, of kind LedgerOpen) to the
// account r at now and returns the ledger entry that records it, with the
// account's next seq. A change that would take the balance out of the int64
// range is EInvalid and leaves r alone.
func ApplyChange(r *storagev1.AccountRecord, c authz.BalanceChange, now int64) (*storagev1.LedgerRecord, error) {
	balance := r.Balance
	switch {
	case c.Kind == authz.LedgerDebit && balance < math.MinInt64+c.Amount,
		c.Kind != authz.LedgerDebit && balance > math.MaxInt64-c.Amount:
		return nil, authz.Errorf(authz.EInvalid, "a %s of %d would take the balance of %d out of range", c.Kind, c.Amount, balance)
	case c.Kind == authz.LedgerDebit:
		balance -= c.Amount
	default:
		balance += c.Amount
	}
	r.Balance = balance
	r.LedgerSeq++
	r.UpdateTime = now
	return &storagev1.LedgerRecord{
		AccountId:      r.Id,
		Seq:            r.LedgerSeq,
		Kind:           ledgerKinds[c.Kind],
		Amount:         c.Amount,
		BalanceAfter:   balance,
		IdempotencyKey: c.IdempotencyKey,
		KeyId:          c.KeyID,
		CreateTime:     now,
	}, nil
}

// Replayed checks that e, the entry recorded under c's idempotency key, is
// the same change as c; else the reuse of the key is EConflict.
func Replayed(e *storagev1.LedgerRecord, c authz.BalanceChange) error {
	if e.Kind != ledgerKinds[c.Kind] || e.Amount != c.Amount || e.KeyId != c.KeyID {
		return authz.Errorf(authz.EConflict, "idempotency key %s was used for another change: %s of %d", authz.Quote(c.IdempotencyKey), Entry(e).Kind, e.Amount)
	}
	return nil
}

// BadToken is the error for a page token that the list did not make.
func BadToken(token string) error {
	return authz.Errorf(authz.EInvalid, "%s is not a page token of this list", authz.Quote(token))
}

// Decode unmarshals a stored value into a new R. The value may be discarded
// afterwards: protobuf copies what it keeps.
func Decode[R any, P interface {
	*R
	proto.Message
}](v []byte) (P, error) {
	r := P(new(R))
	if err := proto.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", r.ProtoReflect().Descriptor().Name(), err)
	}
	return r, nil
}

// Encode marshals a record.
func Encode(r proto.Message) ([]byte, error) {
	v, err := proto.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", r.ProtoReflect().Descriptor().Name(), err)
	}
	return v, nil
}
