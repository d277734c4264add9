package bolt

import (
	"context"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// CreateKey stores a new key of an existing account.
func (s *Store) CreateKey(ctx context.Context, nk authz.NewKey) (authz.Key, error) {
	var r *storagev1.KeyRecord
	err := s.update(ctx, func(tx *bbolt.Tx) (ch changed, err error) {
		now := s.now()
		r, err = s.insertNewKey(tx, authz.NewKeyID(now), &nk, now, &ch)
		return ch, err
	})
	if err != nil {
		return authz.Key{}, err
	}
	return record.Key(r), nil
}

// Key returns the key with the given id.
func (s *Store) Key(ctx context.Context, id string) (authz.Key, error) {
	if err := authz.ValidateKeyID(id); err != nil {
		return authz.Key{}, err
	}
	var k authz.Key
	err := s.view(ctx, func(tx *bbolt.Tx) error {
		r, err := getKey(tx.Bucket(bucketKeys), id)
		if err != nil {
			return err
		}
		k = record.Key(s.withLastUsed(r))
		return nil
	})
	return k, err
}

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
	var after []byte
	if page.Token != "" {
		if !authz.ValidKeyID(page.Token) {
			return nil, "", record.BadToken(page.Token)
		}
		after = accountKeyKey(accountID, page.Token)
	}
	var ks []authz.Key
	var more bool
	err := s.view(ctx, func(tx *bbolt.Tx) (err error) {
		if _, err := getAccount(tx.Bucket(bucketAccounts), accountID); err != nil {
			return err
		}
		keys := tx.Bucket(bucketKeys)
		prefix := []byte(accountID)
		more, err = scan(tx.Bucket(bucketAccountKeys), prefix, after, size, func(k, _ []byte) error {
			r, err := getKey(keys, string(k[len(prefix):]))
			if err != nil {
				return err
			}
			ks = append(ks, record.Key(s.withLastUsed(r)))
			return nil
		})
		return err
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
	err := s.update(ctx, func(tx *bbolt.Tx) (changed, error) {
		keys := tx.Bucket(bucketKeys)
		var err error
		if r, err = getKey(keys, id); err != nil || r.RevokeTime != 0 {
			return changed{}, err
		}
		r.RevokeTime = s.now().UnixNano()
		if err := put(keys, []byte(id), s.withLastUsed(r)); err != nil {
			return changed{}, err
		}
		return changed{keys: []string{id}}, nil
	})
	if err != nil {
		return authz.Key{}, err
	}
	return record.Key(s.withLastUsed(r)), nil
}

// RotateKey issues a replacement for an active key that has not been
// rotated before. The replacement has the old key's account and name, and
// replacement's ExpireTime (none if zero). The old key expires after grace
// (keeping an earlier expiry), or is revoked at once when grace is zero.
func (s *Store) RotateKey(ctx context.Context, id string, grace time.Duration, replacement authz.NewKey) (old, created authz.Key, err error) {
	if err := authz.ValidateKeyID(id); err != nil {
		return authz.Key{}, authz.Key{}, err
	}
	if err := authz.ValidateGrace(grace); err != nil {
		return authz.Key{}, authz.Key{}, err
	}
	var oldRec, newRec *storagev1.KeyRecord
	err = s.update(ctx, func(tx *bbolt.Tx) (ch changed, err error) {
		keys := tx.Bucket(bucketKeys)
		if oldRec, err = getKey(keys, id); err != nil {
			return ch, err
		}
		now := s.now()
		newID := authz.NewKeyID(now)
		if err := record.Rotate(oldRec, newID, grace, now); err != nil {
			return ch, err
		}
		replacement.AccountID, replacement.Name = oldRec.AccountId, oldRec.Name
		if newRec, err = s.insertNewKey(tx, newID, &replacement, now, &ch); err != nil {
			return ch, err
		}
		if err := put(keys, []byte(id), s.withLastUsed(oldRec)); err != nil {
			return ch, err
		}
		ch.keys = append(ch.keys, id)
		return ch, nil
	})
	if err != nil {
		return authz.Key{}, authz.Key{}, err
	}
	return record.Key(s.withLastUsed(oldRec)), record.Key(newRec), nil
}

// insertKey writes a new key, indexes its hash and lists it under its
// account. It fails with EConflict when a key with the same hash is stored
// or was written earlier in tx.
func insertKey(tx *bbolt.Tx, r *storagev1.KeyRecord) error {
	if hashTaken(tx, authz.KeyHash(r.Hash)) {
		return record.ErrHashTaken
	}
	if err := putKey(tx, r); err != nil {
		return err
	}
	return tx.Bucket(bucketKeyHashes).Put(r.Hash, []byte(r.Id))
}

// putKey writes a new key's record and lists it under its account; the
// caller indexes its hash.
func putKey(tx *bbolt.Tx, r *storagev1.KeyRecord) error {
	if err := put(tx.Bucket(bucketKeys), []byte(r.Id), r); err != nil {
		return err
	}
	return tx.Bucket(bucketAccountKeys).Put(accountKeyKey(r.AccountId, r.Id), nil)
}

// withLastUsed raises r's last-used time to the one recorded in memory by
// MarkUsed and not yet flushed, and returns r.
func (s *Store) withLastUsed(r *storagev1.KeyRecord) *storagev1.KeyRecord {
	if len(r.Hash) == len(authz.KeyHash{}) {
		r.LastUsedTime = max(r.LastUsedTime, s.idx.LastUsed(authz.KeyHash(r.Hash)))
	}
	return r
}

func getKey(b *bbolt.Bucket, id string) (*storagev1.KeyRecord, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, authz.Errorf(authz.ENotFound, "key %s not found", id)
	}
	return record.Decode[storagev1.KeyRecord](v)
}
