package etcd

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// CreateKey stores a new key of an existing account. One transaction
// writes the key, claims its hash (so that no two keys share a secret, on
// any replica) and lists it under its account.
func (s *Store) CreateKey(ctx context.Context, nk authz.NewKey) (authz.Key, error) {
	now := s.opts.Now()
	r, err := record.NewKey(authz.NewKeyID(now), &nk, now)
	if err != nil {
		return authz.Key{}, err
	}
	err = s.call(ctx, func(ctx context.Context) error {
		ak := s.l.account(nk.AccountID)
		exists := clientv3.Compare(clientv3.CreateRevision(ak), ">", 0)
		_, err := s.putNewKey(ctx, r, []clientv3.Cmp{exists}, ak)
		return err
	})
	if err != nil {
		return authz.Key{}, err
	}
	return record.Key(r), nil
}

// write is a record a transaction puts.
type write struct {
	key   string
	value []byte
}

// putNewKey writes the new key r, and also, when cmps hold and the key's
// hash is unclaimed. It claims the hash and lists the key under its account
// in the same transaction, and applies what it wrote, with the account
// record it reads there, to memory. It fails with ENotFound when the
// account does not exist and EConflict when the hash is claimed; when it
// returns false and no error, a compare of cmps failed.
func (s *Store) putNewKey(ctx context.Context, r *storagev1.KeyRecord, cmps []clientv3.Cmp, ak string, also ...write) (bool, error) {
	v, err := record.Encode(r)
	if err != nil {
		return false, err
	}
	writes := append(also, write{s.l.key(r.Id), v})
	hk := s.l.hash(authz.KeyHash(r.Hash))
	var ops []clientv3.Op
	for _, w := range writes {
		ops = append(ops, clientv3.OpPut(w.key, string(w.value)))
	}
	ops = append(ops,
		clientv3.OpPut(hk, r.Id),
		clientv3.OpPut(s.l.accountKeys(r.AccountId)+r.Id, ""),
		clientv3.OpGet(ak))
	resp, err := s.cli.Txn(ctx).If(append(cmps, notExists(hk))...).
		Then(ops...).
		Else(clientv3.OpGet(ak, clientv3.WithCountOnly()), clientv3.OpGet(hk, clientv3.WithCountOnly())).Commit()
	switch {
	case err != nil:
		return false, err
	case !resp.Succeeded && resp.Responses[0].GetResponseRange().Count == 0:
		return false, notFound("account", r.AccountId)
	case !resp.Succeeded && resp.Responses[1].GetResponseRange().Count > 0:
		return false, record.ErrHashTaken
	case !resp.Succeeded:
		return false, nil
	}
	// The account first, so that the new key finds it in memory.
	kvs := resp.Responses[len(ops)-1].GetResponseRange().Kvs
	for _, w := range writes {
		kvs = append(kvs, written(w.key, w.value, resp.Header.Revision))
	}
	s.apply(kvs...)
	return true, nil
}

// Key returns the key with the given id.
func (s *Store) Key(ctx context.Context, id string) (authz.Key, error) {
	if err := authz.ValidateKeyID(id); err != nil {
		return authz.Key{}, err
	}
	var k authz.Key
	err := s.call(ctx, func(ctx context.Context) error {
		r, _, err := s.getKey(ctx, id)
		if err == nil {
			k = record.Key(r)
		}
		return err
	})
	return k, err
}

// getKey reads a key record and its mod revision, with its last-used time
// raised to the newest known to etcd or to this replica.
func (s *Store) getKey(ctx context.Context, id string) (*storagev1.KeyRecord, int64, error) {
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(s.l.key(id)), clientv3.OpGet(s.l.used(id))).Commit()
	if err != nil {
		return nil, 0, err
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil, 0, notFound("key", id)
	}
	r, err := s.keyRecord(kvs[0], resp.Responses[1].GetResponseRange().Kvs)
	return r, kvs[0].ModRevision, err
}

// keyRecord decodes a key record and raises its last-used time to the one
// stored beside it (used, if any) and the one in memory.
func (s *Store) keyRecord(kv *mvccpb.KeyValue, used []*mvccpb.KeyValue) (*storagev1.KeyRecord, error) {
	r, err := record.Decode[storagev1.KeyRecord](kv.Value)
	if err != nil {
		return nil, err
	}
	if len(used) > 0 {
		r.LastUsedTime = max(r.LastUsedTime, decodeTime(used[0].Value))
	}
	if len(r.Hash) == len(authz.KeyHash{}) {
		r.LastUsedTime = max(r.LastUsedTime, s.idx.LastUsed(authz.KeyHash(r.Hash)))
	}
	return r, nil
}

// keysPerTxn is how many keys Keys reads in one transaction: two reads a
// key, within etcd's default limit of 128 operations.
const keysPerTxn = 64

// Keys lists an account's keys in creation order. The page token is the id
// of the last key of the previous page.
func (s *Store) Keys(ctx context.Context, accountID string, page authz.Page) ([]authz.Key, string, error) {
	if err := authz.ValidateAccountID(accountID); err != nil {
		return nil, "", err
	}
	if err := page.Validate(); err != nil {
		return nil, "", err
	}
	size := page.Limit()
	if page.Token != "" && !authz.ValidKeyID(page.Token) {
		return nil, "", record.BadToken(page.Token)
	}
	var ks []authz.Key
	var more bool
	err := s.call(ctx, func(ctx context.Context) error {
		prefix := s.l.accountKeys(accountID)
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.l.account(accountID), clientv3.WithCountOnly()),
			clientv3.OpGet(prefix+after(page.Token), append(listRange(prefix, size), clientv3.WithKeysOnly())...),
		).Commit()
		if err != nil {
			return err
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return notFound("account", accountID)
		}
		list := resp.Responses[1].GetResponseRange()
		more = list.More
		for start := 0; start < len(list.Kvs); start += keysPerTxn {
			var reads []clientv3.Op
			for _, kv := range list.Kvs[start:min(start+keysPerTxn, len(list.Kvs))] {
				id := string(kv.Key[len(prefix):])
				reads = append(reads, clientv3.OpGet(s.l.key(id)), clientv3.OpGet(s.l.used(id)))
			}
			resp, err := s.cli.Txn(ctx).Then(reads...).Commit()
			if err != nil {
				return err
			}
			for i := 0; i < len(resp.Responses); i += 2 {
				kvs := resp.Responses[i].GetResponseRange().Kvs
				if len(kvs) == 0 {
					continue // listed but gone: only a hand-made deletion does that
				}
				r, err := s.keyRecord(kvs[0], resp.Responses[i+1].GetResponseRange().Kvs)
				if err != nil {
					return err
				}
				ks = append(ks, record.Key(r))
			}
		}
		return nil
	})
	if err != nil || !more {
		return ks, "", err
	}
	return ks, ks[len(ks)-1].ID, nil
}

// RevokeKey revokes a key at once; a revoked key is returned unchanged.
func (s *Store) RevokeKey(ctx context.Context, id string) (authz.Key, error) {
	if err := authz.ValidateKeyID(id); err != nil {
		return authz.Key{}, err
	}
	var r *storagev1.KeyRecord
	err := s.retry(ctx, func(ctx context.Context) (bool, error) {
		var rev int64
		var err error
		if r, rev, err = s.getKey(ctx, id); err != nil || r.RevokeTime != 0 {
			return true, err
		}
		r.RevokeTime = s.opts.Now().UnixNano()
		return s.putIfUnchanged(ctx, s.l.key(id), rev, r, nil)
	})
	if err != nil {
		return authz.Key{}, err
	}
	return record.Key(r), nil
}

// RotateKey issues a replacement for an active key that has not been
// rotated before, in one transaction that also changes the old key on the
// condition that it has not changed since it was read. The replacement has
// the old key's account and name, and replacement's ExpireTime (none if
// zero). The old key expires after grace (keeping an earlier expiry), or is
// revoked at once when grace is zero.
func (s *Store) RotateKey(ctx context.Context, id string, grace time.Duration, replacement authz.NewKey) (old, created authz.Key, err error) {
	if err := authz.ValidateKeyID(id); err != nil {
		return authz.Key{}, authz.Key{}, err
	}
	if err := authz.ValidateGrace(grace); err != nil {
		return authz.Key{}, authz.Key{}, err
	}
	var oldRec, newRec *storagev1.KeyRecord
	err = s.retry(ctx, func(ctx context.Context) (bool, error) {
		var rev int64
		var err error
		if oldRec, rev, err = s.getKey(ctx, id); err != nil {
			return false, err
		}
		now := s.opts.Now()
		newID := authz.NewKeyID(now)
		if err := record.Rotate(oldRec, newID, grace, now); err != nil {
			return false, err
		}
		replacement.AccountID, replacement.Name = oldRec.AccountId, oldRec.Name
		if newRec, err = record.NewKey(newID, &replacement, now); err != nil {
			return false, err
		}
		v, err := record.Encode(oldRec)
		if err != nil {
			return false, err
		}
		k := s.l.key(id)
		unchanged := clientv3.Compare(clientv3.ModRevision(k), "=", rev)
		return s.putNewKey(ctx, newRec, []clientv3.Cmp{unchanged}, s.l.account(oldRec.AccountId), write{k, v})
	})
	if err != nil {
		return authz.Key{}, authz.Key{}, err
	}
	return record.Key(oldRec), record.Key(newRec), nil
}
