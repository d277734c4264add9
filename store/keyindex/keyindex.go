/*
Package keyindex is the in-memory index of keys and accounts from which
keygate's stores answer LookupKey and MarkUsed: without a lock, without
allocating, and without Go pointers for the garbage collector to scan.

Entries live in arenas of fixed-size chunks and refer to each other by
number, ids are byte arrays, and an open-addressing hash table maps key
hashes to entry numbers. A million keys take about 140 bytes each.

Readers never wait. Writers apply stored records, each at a revision that
grows with every change (an etcd mod revision, a bbolt transaction id): a
record applied twice, or after a newer one, changes nothing, so a store may
apply its own writes and the changes it watches in any order.

# Caveats

Removing a key marks its entry dead: lookups miss it and its memory stays
in the arena. The entry comes back to life if its record does (at a newer
revision), and a new key with the same hash takes over its slot in the
table, but the arena never gives memory back: removals, which keygate
never makes itself (only records deleted by hand in etcd are removed),
leak about a hundred bytes each until the process restarts. A key's hash
never changes: a record whose hash has been changed by hand is a new key,
and the entry under its old hash is forgotten only by Sweep.
*/
package keyindex

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// ErrHashTaken is returned by ApplyKey for a key whose hash another key
// holds.
var ErrHashTaken = errors.New("its hash belongs to another key")

// Lengths of the ids that entries hold, in arrays of maxIDLen bytes.
var (
	keyIDLen     = len(authz.NewKeyID(time.Unix(0, 0)))
	accountIDLen = len(authz.NewAccountID(time.Unix(0, 0)))
)

const maxIDLen = 32

// account is the in-memory state of an account. All its keys share it, so
// a change reaches them at once.
type account struct {
	id       [maxIDLen]byte // the account id, accountIDLen bytes
	rev      int64          // revision of the state held; guarded by Index.mu
	balance  atomic.Int64
	disabled atomic.Bool
}

// key is the in-memory state of a key.
type key struct {
	hash    authz.KeyHash
	id      [maxIDLen]byte // the key id, keyIDLen bytes
	account uint32         // the account's entry number
	gen     uint32         // the snapshot that last applied the key; guarded by Index.mu
	// next links the index's dirty list of entries whose lastUsed waits
	// to be written (an entry number plus one, 0 ending it).
	next     atomic.Uint32
	flags    atomic.Uint32 // dirty, dead, revoked
	rev      int64         // revision of the state held, or of the removal; guarded by Index.mu
	expire   atomic.Int64  // Unix ns; 0: never expires
	lastUsed atomic.Int64  // Unix ns of the newest use known, stored or not
}

// Flags of a key entry.
const (
	dirty   = 1 << iota // on the dirty list
	dead                // removed: lookups miss it
	revoked             // revoked: checks deny it
)

// keyID returns the entry's key id. The string shares the entry's memory,
// which never changes and is never freed while it is referenced.
func (e *key) keyID() string { return unsafe.String(&e.id[0], keyIDLen) }

func (a *account) accountID() string { return unsafe.String(&a.id[0], accountIDLen) }

// Index holds keys and accounts. It is safe for concurrent use: lookups
// take no lock, and changes are serialized by a mutex. The zero value is
// not usable: call New.
type Index struct {
	table    atomic.Pointer[table]
	keys     arena[key]
	accounts arena[account]
	dirty    atomic.Uint32 // head of the list of entries to flush, as in key.next
	live     atomic.Int64  // keys that lookups find

	mu sync.Mutex
	// accountIDs maps account ids to entry numbers. Its keys are arrays, not
	// strings, so that it holds no pointers: the garbage collector skips
	// it instead of following a string per account in every cycle, which
	// was most of a cycle's work and the tail of Check's latency
	// (docs/benchmarks.md). Guarded by mu.
	accountIDs map[[maxIDLen]byte]uint32
	gen        uint32 // the current snapshot; guarded by mu
}

// New returns an empty index.
func New() *Index {
	x := &Index{accountIDs: make(map[[maxIDLen]byte]uint32)}
	x.table.Store(newTable(1024))
	return x
}

// get returns the entry of the key with hash h and its number, or nil.
func (x *Index) get(h *authz.KeyHash) (*key, uint32) {
	_, n, found := x.find(x.table.Load(), h)
	if !found {
		return nil, 0
	}
	if e := x.keys.at(n); e.flags.Load()&dead == 0 {
		return e, n
	}
	return nil, 0
}

// Lookup returns what a check needs to know of the key with hash h.
func (x *Index) Lookup(h authz.KeyHash) (authz.IndexedKey, bool) {
	e, _ := x.get(&h)
	if e == nil {
		return authz.IndexedKey{}, false
	}
	a := x.accounts.at(e.account)
	return authz.IndexedKey{
		KeyID:           e.keyID(),
		AccountID:       a.accountID(),
		ExpireTime:      record.Time(e.expire.Load()),
		Revoked:         e.flags.Load()&revoked != 0,
		AccountDisabled: a.disabled.Load(),
		Balance:         a.balance.Load(),
	}, true
}

// Len returns the number of accounts and of keys that lookups find.
func (x *Index) Len() (accounts, keys int) {
	return int(x.accounts.len()), int(x.live.Load())
}

// ApplyAccount applies an account record at rev (positive), unless the
// index holds the account at rev or later.
func (x *Index) ApplyAccount(r *storagev1.AccountRecord, rev int64) error {
	if len(r.Id) != accountIDLen {
		return fmt.Errorf("account id %q has %d bytes, want %d", r.Id, len(r.Id), accountIDLen)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	a := x.accounts.at(x.account(r.Id))
	if rev <= a.rev {
		return nil
	}
	a.rev = rev
	a.balance.Store(r.Balance)
	a.disabled.Store(r.Disabled)
	return nil
}

// account returns the entry number of the account with the given id, adding
// an empty one (revision 0, no balance) when it is not known yet. The caller
// holds mu.
func (x *Index) account(id string) uint32 {
	var k [maxIDLen]byte
	copy(k[:], id)
	if i, ok := x.accountIDs[k]; ok {
		return i
	}
	i, a := x.accounts.add()
	a.id = k
	x.accountIDs[k] = i
	return i
}

// ApplyKey applies a key record at rev (positive), unless the index holds
// the key at rev or later. A key whose account is not known yet gets an
// empty account until ApplyAccount fills it. It fails for a record with
// ids or a hash of the wrong length, and with ErrHashTaken.
func (x *Index) ApplyKey(r *storagev1.KeyRecord, rev int64) error {
	switch {
	case len(r.Hash) != len(authz.KeyHash{}):
		return fmt.Errorf("key %s has a %d-byte hash", r.Id, len(r.Hash))
	case len(r.Id) != keyIDLen:
		return fmt.Errorf("key id %q has %d bytes, want %d", r.Id, len(r.Id), keyIDLen)
	case len(r.AccountId) != accountIDLen:
		return fmt.Errorf("key %s: account id %q has %d bytes, want %d", r.Id, r.AccountId, len(r.AccountId), accountIDLen)
	}
	h := authz.KeyHash(r.Hash)
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.table.Load()
	slot, n, found := x.find(t, &h)
	if found {
		e := x.keys.at(n)
		if e.keyID() == r.Id {
			x.update(e, r, rev)
			return nil
		}
		if e.flags.Load()&dead == 0 {
			return ErrHashTaken
		}
		// The hash of a removed key is back under another id: a new entry
		// takes the slot, and the old one stays in the arena, unreachable.
	}
	n, e := x.keys.add()
	e.hash, e.account = h, x.account(r.AccountId)
	copy(e.id[:], r.Id)
	e.lastUsed.Store(r.LastUsedTime)
	e.flags.Store(dead) // until update brings it to life, before it is published
	x.update(e, r, rev)
	if !found && 2*int(x.keys.len()) > len(t.slots) {
		t = x.grown(t)
		slot, _, _ = x.find(t, &h)
	}
	set(slot, &h, n)
	return nil
}

// update applies r at rev to entry e, unless e holds rev or later, and
// marks e seen by the current snapshot. The caller holds mu.
func (x *Index) update(e *key, r *storagev1.KeyRecord, rev int64) {
	e.gen = x.gen
	if rev <= e.rev {
		return
	}
	e.rev = rev
	e.expire.Store(r.ExpireTime)
	if r.RevokeTime != 0 {
		e.flags.Or(revoked)
	} else {
		e.flags.And(^uint32(revoked))
	}
	if e.flags.And(^uint32(dead))&dead != 0 {
		x.live.Add(1)
	}
}

// grown returns a table twice the size of t with t's entries, and
// publishes it. The caller holds mu.
func (x *Index) grown(t *table) *table {
	g := newTable(2 * len(t.slots))
	for i := range t.slots {
		if s := t.slots[i].Load(); s != 0 {
			slot, _, _ := x.find(g, &x.keys.at(uint32(s)-1).hash)
			slot.Store(s)
		}
	}
	x.table.Store(g)
	return g
}

// Remove removes each key whose id revs holds, unless the index holds the
// key at the revision revs gives (the removal's) or later. It reads every
// entry once: removals are rare, and come in batches.
func (x *Index) Remove(revs map[string]int64) {
	if len(revs) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range x.keys.len() {
		e := x.keys.at(i)
		if rev, ok := revs[e.keyID()]; ok && e.rev < rev {
			x.remove(e, rev)
		}
	}
}

// remove marks e removed at rev. The caller holds mu.
func (x *Index) remove(e *key, rev int64) {
	e.rev = rev
	if e.flags.Or(dead)&dead == 0 {
		x.live.Add(-1)
	}
}

// StartSnapshot starts the application of a snapshot of every record, and
// returns its generation, for Sweep.
func (x *Index) StartSnapshot() uint32 {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.gen++
	return x.gen
}

// Sweep removes the keys that the snapshot of generation gen, taken at
// rev, did not hold and that no change after it brought: the keys deleted
// while the store was not following its changes.
func (x *Index) Sweep(gen uint32, rev int64) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := range x.keys.len() {
		if e := x.keys.at(i); e.gen != gen && e.rev <= rev && e.flags.Load()&dead == 0 {
			x.remove(e, rev+1)
		}
	}
}
