package bolt

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
)

// This file converts between stored records and authz types, and builds
// bucket keys. Records keep times as Unix nanoseconds, 0 meaning unset.

var maxTime = time.Unix(0, math.MaxInt64)

// unixNano returns t in Unix nanoseconds (0 for the zero time) and whether t
// fits in a record: records hold times from 1970 to 2262.
func unixNano(t time.Time) (int64, bool) {
	switch {
	case t.IsZero():
		return 0, true
	case t.Before(time.Unix(0, 0)) || t.After(maxTime):
		return 0, false
	}
	return t.UnixNano(), true
}

// timeOf is the inverse of unixNano, in UTC.
func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func accountOf(r *storagev1.AccountRecord) authz.Account {
	status := authz.AccountActive
	if r.Disabled {
		status = authz.AccountDisabled
	}
	return authz.Account{
		ID:         r.Id,
		Name:       r.Name,
		Balance:    r.Balance,
		Status:     status,
		CreateTime: timeOf(r.CreateTime),
		UpdateTime: timeOf(r.UpdateTime),
	}
}

func keyOf(r *storagev1.KeyRecord) authz.Key {
	k := authz.Key{
		ID:           r.Id,
		AccountID:    r.AccountId,
		Name:         r.Name,
		Hint:         r.Hint,
		CreateTime:   timeOf(r.CreateTime),
		ExpireTime:   timeOf(r.ExpireTime),
		RevokeTime:   timeOf(r.RevokeTime),
		LastUsedTime: timeOf(r.LastUsedTime),
		ReplacedBy:   r.ReplacedBy,
	}
	copy(k.Hash[:], r.Hash)
	return k
}

// newKeyRecord returns the record of a key created at now. The caller has
// validated nk.
func newKeyRecord(id string, nk *authz.NewKey, now int64) *storagev1.KeyRecord {
	expire, _ := unixNano(nk.ExpireTime)
	return &storagev1.KeyRecord{
		Id:         id,
		AccountId:  nk.AccountID,
		Name:       nk.Name,
		Hash:       nk.Hash[:],
		Hint:       nk.Hint,
		CreateTime: now,
		ExpireTime: expire,
	}
}

// ledgerKinds maps authz ledger kinds to stored ones.
var ledgerKinds = [...]storagev1.LedgerRecord_Kind{
	authz.LedgerOpen:   storagev1.LedgerRecord_KIND_OPEN,
	authz.LedgerCredit: storagev1.LedgerRecord_KIND_CREDIT,
	authz.LedgerDebit:  storagev1.LedgerRecord_KIND_DEBIT,
}

func entryOf(r *storagev1.LedgerRecord) authz.LedgerEntry {
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
		CreateTime:     timeOf(r.CreateTime),
	}
}

// decode unmarshals a stored value into a new R. The value may be discarded
// afterwards: protobuf copies what it keeps.
func decode[R any, P interface {
	*R
	proto.Message
}](v []byte) (P, error) {
	r := P(new(R))
	if err := proto.Unmarshal(v, r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", r.ProtoReflect().Descriptor().Name(), err)
	}
	return r, nil
}

func put(b *bbolt.Bucket, key []byte, r proto.Message) error {
	v, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode %s: %w", r.ProtoReflect().Descriptor().Name(), err)
	}
	return b.Put(key, v)
}

// beUint64 encodes ledger seqs and the schema version.
func beUint64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// parseBEUint64 is the inverse of beUint64; it reports whether b has the
// right length.
func parseBEUint64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

func ledgerKey(accountID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(accountID), seq)
}

func idempotencyKey(accountID, key string) []byte {
	return append(append([]byte(accountID), 0), key...)
}

func accountKeyKey(accountID, keyID string) []byte {
	return append([]byte(accountID), keyID...)
}
