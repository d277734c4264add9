package etcd

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// account is the in-memory state of an account that a check reads. The
// keys of the account point to it, so that one change reaches them all.
type account struct {
	id       string
	rev      int64 // etcd mod revision of the state held; guarded by index.mu
	balance  atomic.Int64
	disabled atomic.Bool
}

// key is the in-memory state of a key.
type key struct {
	id      string
	hash    authz.KeyHash
	account *account
	rev     int64  // etcd mod revision of the state held; guarded by index.mu
	gen     uint64 // the snapshot that last saw the key; guarded by index.mu
	expire  atomic.Int64
	revoked atomic.Bool
	// lastUsed is the newest use known; flushed the newest one written
	// (guarded by Store.flushMu).
	lastUsed atomic.Int64
	flushed  int64
}

func (k *key) credential() authz.Credential {
	return authz.Credential{
		KeyID:           k.id,
		AccountID:       k.account.id,
		ExpireTime:      record.Time(k.expire.Load()),
		Revoked:         k.revoked.Load(),
		AccountDisabled: k.account.disabled.Load(),
		Balance:         k.account.balance.Load(),
	}
}

// index holds every account and key of the prefix. Checks read it through
// the hash shards, which take only a shard's read lock; all changes go
// through apply and remove, serialized by mu and ordered by etcd revision,
// so that a change applied twice (once by the write that made it, once
// from the watch) or out of order never rolls state back.
type index struct {
	shards [256]shard

	mu       sync.Mutex
	accounts map[string]*account // guarded by mu
	keys     map[string]*key     // by id; guarded by mu
	gen      uint64              // guarded by mu

	nAccounts, nKeys atomic.Int64
}

type shard struct {
	mu sync.RWMutex
	m  map[authz.KeyHash]*key
	// Pad to a cache line so that readers of neighbouring shards do not
	// share the line that holds a read lock count.
	_ [64 - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[authz.KeyHash]*key(nil))]byte
}

func newIndex() *index {
	x := &index{accounts: make(map[string]*account), keys: make(map[string]*key)}
	for i := range x.shards {
		x.shards[i].m = make(map[authz.KeyHash]*key)
	}
	return x
}

func (x *index) get(h authz.KeyHash) *key {
	s := &x.shards[h[0]]
	s.mu.RLock()
	k := s.m[h]
	s.mu.RUnlock()
	return k
}

// setHash puts k under h, or removes h when k is nil.
func (x *index) setHash(h authz.KeyHash, k *key) {
	s := &x.shards[h[0]]
	s.mu.Lock()
	if k == nil {
		delete(s.m, h)
	} else {
		s.m[h] = k
	}
	s.mu.Unlock()
}

// applyAccount applies an account record at rev. The caller holds mu.
func (x *index) applyAccount(r *storagev1.AccountRecord, rev int64) {
	a := x.accountLocked(r.Id)
	if rev <= a.rev {
		return
	}
	a.rev = rev
	a.balance.Store(r.Balance)
	a.disabled.Store(r.Disabled)
}

// accountLocked returns the account with the given id, adding an empty
// one (revision 0, no balance) when it is not known yet. The caller holds mu.
func (x *index) accountLocked(id string) *account {
	a := x.accounts[id]
	if a == nil {
		a = &account{id: id}
		x.accounts[id] = a
		x.nAccounts.Add(1)
	}
	return a
}

// applyKey applies a key record at rev. It reports false for a record
// whose hash is malformed or held by another key, which it ignores. The
// caller holds mu.
func (x *index) applyKey(r *storagev1.KeyRecord, rev int64) bool {
	k := x.keys[r.Id]
	if k == nil {
		if len(r.Hash) != len(authz.KeyHash{}) {
			return false
		}
		h := authz.KeyHash(r.Hash)
		if other := x.get(h); other != nil {
			return false
		}
		k = &key{id: r.Id, hash: h, account: x.accountLocked(r.AccountId)}
		k.lastUsed.Store(r.LastUsedTime)
		k.flushed = r.LastUsedTime
		x.keys[r.Id] = k
		x.setHash(h, k)
		x.nKeys.Add(1)
	}
	k.gen = x.gen
	if rev <= k.rev {
		return true
	}
	k.rev = rev
	k.expire.Store(r.ExpireTime)
	k.revoked.Store(r.RevokeTime != 0)
	return true
}

// removeKey forgets the key with the given id if it is older than rev. The
// caller holds mu.
func (x *index) removeKey(id string, rev int64) {
	if k := x.keys[id]; k != nil && k.rev < rev {
		delete(x.keys, id)
		x.setHash(k.hash, nil)
		x.nKeys.Add(-1)
	}
}

// sweep removes the keys that the snapshot of generation gen, taken at
// rev, did not hold and that no later change brought. The caller holds mu.
func (x *index) sweep(gen uint64, rev int64) {
	for id, k := range x.keys {
		if k.gen != gen && k.rev <= rev {
			x.removeKey(id, rev+1)
		}
	}
}

// minUseStep is how much newer a use must be than the recorded one to be
// recorded: it keeps marking a busy key to one atomic load.
const minUseStep = int64(time.Second)

// markUsed raises k's last-used time to n (Unix ns).
func (k *key) markUsed(n int64) {
	for {
		old := k.lastUsed.Load()
		if n < old+minUseStep || k.lastUsed.CompareAndSwap(old, n) {
			return
		}
	}
}
