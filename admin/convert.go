package admin

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/authz"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// This file holds every conversion between authz and adminv1 types.

func accountProto(a authz.Account) *adminv1.Account {
	return &adminv1.Account{
		Id:         a.ID,
		Name:       a.Name,
		Balance:    a.Balance,
		Status:     a.Status.String(),
		CreateTime: timeProto(a.CreateTime),
		UpdateTime: timeProto(a.UpdateTime),
	}
}

func keyProto(k authz.Key, now time.Time) *adminv1.Key {
	return &adminv1.Key{
		Id:           k.ID,
		AccountId:    k.AccountID,
		Name:         k.Name,
		Hint:         k.Hint,
		State:        k.State(now).String(),
		CreateTime:   timeProto(k.CreateTime),
		ExpireTime:   timeProto(k.ExpireTime),
		RevokeTime:   timeProto(k.RevokeTime),
		LastUsedTime: timeProto(k.LastUsedTime),
		ReplacedBy:   k.ReplacedBy,
	}
}

func entryProto(e authz.LedgerEntry) *adminv1.LedgerEntry {
	return &adminv1.LedgerEntry{
		AccountId:      e.AccountID,
		Seq:            int64(e.Seq),
		Kind:           e.Kind.String(),
		Amount:         e.Amount,
		BalanceAfter:   e.BalanceAfter,
		IdempotencyKey: e.IdempotencyKey,
		KeyId:          e.KeyID,
		CreateTime:     timeProto(e.CreateTime),
	}
}

// timeProto maps the zero time, which authz uses for "not set", to nil.
func timeProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// timeFromProto maps nil to the zero time.
func timeFromProto(field string, ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, authz.Errorf(authz.EInvalid, "%s is not a valid timestamp", field)
	}
	return ts.AsTime(), nil
}

// durationFromProto maps nil to zero.
func durationFromProto(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, authz.Errorf(authz.EInvalid, "%s is not a valid duration", field)
	}
	return d.AsDuration(), nil
}

// pageFromProto checks a page request.
func pageFromProto(size int32, token string) (authz.Page, error) {
	p := authz.Page{Size: int(size), Token: token}
	return p, p.Validate()
}
