package etcd

import (
	"context"
	"fmt"
	"hash/maphash"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// CreateAccount creates an active account. A positive opening balance is
// recorded as a LedgerOpen entry with seq 1, in the same transaction.
func (s *Store) CreateAccount(ctx context.Context, name string, openingBalance int64) (authz.Account, error) {
	if err := (authz.NewAccount{Name: name, Balance: openingBalance}).Validate(); err != nil {
		return authz.Account{}, err
	}
	now := s.opts.Now()
	r := &storagev1.AccountRecord{
		Id:         authz.NewAccountID(now),
		Name:       name,
		CreateTime: now.UnixNano(),
		UpdateTime: now.UnixNano(),
	}
	var ops []clientv3.Op
	if openingBalance > 0 {
		e, err := record.ApplyChange(r, authz.BalanceChange{Kind: authz.LedgerOpen, Amount: openingBalance}, r.CreateTime)
		if err != nil {
			return authz.Account{}, err
		}
		if ops, err = s.putLedger(ops, e); err != nil {
			return authz.Account{}, err
		}
	}
	err := s.call(ctx, func(ctx context.Context) error {
		k := s.l.account(r.Id)
		v, err := record.Encode(r)
		if err != nil {
			return err
		}
		resp, err := s.cli.Txn(ctx).If(notExists(k)).Then(append(ops, clientv3.OpPut(k, string(v)))...).Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("account id %s is taken", r.Id)
		}
		s.apply(written(k, v, resp.Header.Revision))
		return nil
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
	var r *storagev1.AccountRecord
	err := s.call(ctx, func(ctx context.Context) error {
		resp, err := s.cli.Get(ctx, s.l.account(id))
		if err != nil {
			return err
		}
		r, _, err = accountIn(resp.Kvs, id)
		return err
	})
	if err != nil {
		return authz.Account{}, err
	}
	return record.Account(r), nil
}

// Accounts lists accounts in creation order. The page token is the id of
// the last account of the previous page.
func (s *Store) Accounts(ctx context.Context, page authz.Page) ([]authz.Account, string, error) {
	if err := page.Validate(); err != nil {
		return nil, "", err
	}
	size := page.Limit()
	if page.Token != "" && !authz.ValidAccountID(page.Token) {
		return nil, "", record.BadToken(page.Token)
	}
	var as []authz.Account
	var more bool
	err := s.call(ctx, func(ctx context.Context) error {
		resp, err := s.cli.Get(ctx, s.l.accounts()+after(page.Token), listRange(s.l.accounts(), size)...)
		if err != nil {
			return err
		}
		more = resp.More
		for _, kv := range resp.Kvs {
			r, err := record.Decode[storagev1.AccountRecord](kv.Value)
			if err != nil {
				return err
			}
			as = append(as, record.Account(r))
		}
		return nil
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
	unlock := s.lockAccount(id)
	defer unlock()
	var r *storagev1.AccountRecord
	err := s.retry(ctx, func(ctx context.Context) (bool, error) {
		resp, err := s.cli.Get(ctx, s.l.account(id))
		if err != nil {
			return false, err
		}
		var rev int64
		if r, rev, err = accountIn(resp.Kvs, id); err != nil || r.Disabled == disabled {
			return true, err
		}
		r.Disabled = disabled
		r.UpdateTime = s.opts.Now().UnixNano()
		return s.putIfUnchanged(ctx, s.l.account(id), rev, r, nil)
	})
	if err != nil {
		return authz.Account{}, err
	}
	return record.Account(r), nil
}

// ChangeBalance applies a credit or debit in one transaction that writes
// the account, its ledger entry and the idempotency key, on the condition
// that the account has not changed since it was read and the idempotency
// key is unclaimed; when another replica got in first, it reads again and
// retries. A debit's KeyID must name a key of the account (else EInvalid);
// a change that would take the balance out of the int64 range is EInvalid.
func (s *Store) ChangeBalance(ctx context.Context, c authz.BalanceChange) (authz.LedgerEntry, error) {
	if err := c.Validate(); err != nil {
		return authz.LedgerEntry{}, err
	}
	unlock := s.lockAccount(c.AccountID)
	defer unlock()
	var entry *storagev1.LedgerRecord
	err := s.retry(ctx, func(ctx context.Context) (done bool, err error) {
		entry, done, err = s.tryChange(ctx, c)
		return done, err
	})
	if err != nil {
		return authz.LedgerEntry{}, err
	}
	return record.Entry(entry), nil
}

// tryChange is one attempt of ChangeBalance: done is false when the
// transaction's compare failed.
func (s *Store) tryChange(ctx context.Context, c authz.BalanceChange) (_ *storagev1.LedgerRecord, done bool, _ error) {
	ak, ik := s.l.account(c.AccountID), s.l.idempotency(c.AccountID, c.IdempotencyKey)
	reads := []clientv3.Op{clientv3.OpGet(ak), clientv3.OpGet(ik)}
	if c.KeyID != "" {
		reads = append(reads, clientv3.OpGet(s.l.accountKeys(c.AccountID)+c.KeyID))
	}
	resp, err := s.cli.Txn(ctx).Then(reads...).Commit() // one consistent read
	if err != nil {
		return nil, false, err
	}
	r, rev, err := accountIn(resp.Responses[0].GetResponseRange().Kvs, c.AccountID)
	if err != nil {
		return nil, false, err
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; c.IdempotencyKey != "" && len(kvs) > 0 {
		e, err := s.replay(ctx, c, kvs[0].Value)
		return e, true, err
	}
	if c.KeyID != "" && len(resp.Responses[2].GetResponseRange().Kvs) == 0 {
		return nil, false, authz.Errorf(authz.EInvalid, "%s is not a key of account %s", c.KeyID, c.AccountID)
	}
	e, err := record.ApplyChange(r, c, s.opts.Now().UnixNano())
	if err != nil {
		return nil, false, err
	}
	ops, err := s.putLedger(nil, e)
	if err != nil {
		return nil, false, err
	}
	var cmps []clientv3.Cmp
	if c.IdempotencyKey != "" { // claimed in the same transaction as the change
		cmps = append(cmps, notExists(ik))
		ops = append(ops, clientv3.OpPut(ik, strconv.FormatUint(e.Seq, 10)))
	}
	done, err = s.putIfUnchanged(ctx, ak, rev, r, cmps, ops...)
	return e, done, err
}

// replay returns the entry whose seq v an idempotency key holds, if it is
// the same change as c.
func (s *Store) replay(ctx context.Context, c authz.BalanceChange, v []byte) (*storagev1.LedgerRecord, error) {
	seq, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("corrupt: idempotency key %q of account %s holds %q", c.IdempotencyKey, c.AccountID, v)
	}
	resp, err := s.cli.Get(ctx, s.l.ledgerEntry(c.AccountID, seq))
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("corrupt: idempotency key %q of account %s names no ledger entry", c.IdempotencyKey, c.AccountID)
	}
	e, err := record.Decode[storagev1.LedgerRecord](resp.Kvs[0].Value)
	if err != nil {
		return nil, err
	}
	return e, record.Replayed(e, c)
}

// putLedger appends to ops the write of a ledger entry.
func (s *Store) putLedger(ops []clientv3.Op, e *storagev1.LedgerRecord) ([]clientv3.Op, error) {
	v, err := record.Encode(e)
	if err != nil {
		return nil, err
	}
	return append(ops, clientv3.OpPut(s.l.ledgerEntry(e.AccountId, e.Seq), string(v))), nil
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
	from := s.l.ledger(accountID)
	if page.Token != "" {
		seq, err := strconv.ParseUint(page.Token, 10, 64)
		if err != nil || seq == 0 {
			return nil, "", record.BadToken(page.Token)
		}
		from = s.l.ledgerEntry(accountID, seq) + "\x00"
	}
	var es []authz.LedgerEntry
	var more bool
	err := s.call(ctx, func(ctx context.Context) error {
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.l.account(accountID), clientv3.WithCountOnly()),
			clientv3.OpGet(from, listRange(s.l.ledger(accountID), size)...),
		).Commit()
		if err != nil {
			return err
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return notFound("account", accountID)
		}
		list := resp.Responses[1].GetResponseRange()
		more = list.More
		for _, kv := range list.Kvs {
			r, err := record.Decode[storagev1.LedgerRecord](kv.Value)
			if err != nil {
				return err
			}
			es = append(es, record.Entry(r))
		}
		return nil
	})
	if err != nil || !more {
		return es, "", err
	}
	return es, strconv.FormatUint(es[len(es)-1].Seq, 10), nil
}

// putIfUnchanged writes r at k, with ops, if k is still at rev and cmps
// hold, and applies r to memory. It reports whether the write happened.
func (s *Store) putIfUnchanged(ctx context.Context, k string, rev int64, r proto.Message, cmps []clientv3.Cmp, ops ...clientv3.Op) (bool, error) {
	v, err := record.Encode(r)
	if err != nil {
		return false, err
	}
	cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(append(ops, clientv3.OpPut(k, string(v)))...).Commit()
	if err != nil || !resp.Succeeded {
		return false, err
	}
	s.apply(written(k, v, resp.Header.Revision))
	return true, nil
}

// accountIn decodes the account record of a Get, or says it is not found.
func accountIn(kvs []*mvccpb.KeyValue, id string) (*storagev1.AccountRecord, int64, error) {
	if len(kvs) == 0 {
		return nil, 0, notFound("account", id)
	}
	r, err := record.Decode[storagev1.AccountRecord](kvs[0].Value)
	return r, kvs[0].ModRevision, err
}

func notFound(what, id string) error {
	return authz.Errorf(authz.ENotFound, "%s %s not found", what, id)
}

// notExists holds when k has never been written (or was deleted).
func notExists(k string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
}

// after is the start of a list that follows the item with the given token.
func after(token string) string {
	if token == "" {
		return ""
	}
	return token + "\x00"
}

// listRange returns the options that list up to size items under prefix.
func listRange(prefix string, size int) []clientv3.OpOption {
	return []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)), clientv3.WithLimit(int64(size))}
}

var lockSeed = maphash.MakeSeed()

// lockAccount serializes this replica's changes of one account, so that
// its own writers do not make each other retry; writers on other replicas
// are ordered by the transactions' compares.
func (s *Store) lockAccount(id string) (unlock func()) {
	mu := &s.accountLocks[maphash.String(lockSeed, id)%uint64(len(s.accountLocks))]
	mu.Lock()
	return mu.Unlock
}
