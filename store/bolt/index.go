package bolt

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keygate/keygate/authz"
)

// The index holds no Go pointers: entries live in arenas of fixed-size
// chunks and refer to each other by number, ids are byte arrays, and the
// hash maps map to numbers. So the garbage collector never scans it, and a
// million keys cost about a hundred bytes each.

// Lengths of the ids that entries hold, in arrays of maxIDLen bytes.
var (
	keyIDLen     = len(authz.NewKeyID(time.Unix(0, 0)))
	accountIDLen = len(authz.NewAccountID(time.Unix(0, 0)))
)

const maxIDLen = 32

// accountEntry is the in-memory state of an account that LookupKey reports.
// All keys of the account share it, so a change reaches them at once.
type accountEntry struct {
	id       [maxIDLen]byte // the account id, accountIDLen bytes
	balance  atomic.Int64
	disabled atomic.Bool
}

// keyEntry is the in-memory state of a key. Entries are never replaced or
// removed, since keys are never deleted.
type keyEntry struct {
	id      [maxIDLen]byte // the key id, keyIDLen bytes
	account uint32         // the account's entry number
	revoked atomic.Bool
	// dirty is set while the entry is on the index's dirty list, waiting for
	// its lastUsed to be written; next links that list (an entry number
	// plus one, 0 ending it).
	dirty    atomic.Bool
	next     atomic.Uint32
	expire   atomic.Int64 // Unix ns; 0: never expires
	lastUsed atomic.Int64 // Unix ns of the newest use known, stored or not
}

// keyID returns the entry's key id. The string shares the entry's memory,
// which never changes and is never freed while it is referenced.
func (e *keyEntry) keyID() string { return unsafe.String(&e.id[0], keyIDLen) }

func (a *accountEntry) accountID() string { return unsafe.String(&a.id[0], accountIDLen) }

// chunkBits sets the entries per arena chunk: 2^14 keys are 1 MiB.
const chunkBits = 14

// arena holds entries at stable addresses, numbered from 0. Readers may
// call at concurrently with one caller of add.
type arena[T any] struct {
	chunks atomic.Pointer[[]*[1 << chunkBits]T]
	n      atomic.Uint32
}

func (a *arena[T]) at(i uint32) *T {
	return &(*a.chunks.Load())[i>>chunkBits][i&(1<<chunkBits-1)]
}

// add returns a new zero entry and its number. Callers of add serialize.
func (a *arena[T]) add() (uint32, *T) {
	i := a.n.Load()
	var cs []*[1 << chunkBits]T
	if p := a.chunks.Load(); p != nil {
		cs = *p
	}
	if int(i>>chunkBits) == len(cs) {
		grown := append(cs[:len(cs):len(cs)], new([1 << chunkBits]T))
		a.chunks.Store(&grown)
	}
	a.n.Store(i + 1)
	return i, a.at(i)
}

// index maps key hashes to entries. It is split into shards by the first
// byte of the hash so that readers of different keys share no lock.
type index struct {
	shards   [256]shard
	keys     arena[keyEntry]
	accounts arena[accountEntry]
	dirty    atomic.Uint32 // head of the list of entries to flush, as in keyEntry.next
}

type shard struct {
	mu sync.RWMutex
	m  map[authz.KeyHash]uint32
	// Pad to a cache line so that readers of neighbouring shards do not
	// contend on the line that holds the RWMutex's reader count.
	_ [64 - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[authz.KeyHash]uint32(nil))]byte
}

func newIndex() *index {
	x := new(index)
	for i := range x.shards {
		x.shards[i].m = make(map[authz.KeyHash]uint32)
	}
	return x
}

// lookup returns the entry number of the key with hash h.
func (x *index) lookup(h authz.KeyHash) (uint32, bool) {
	s := &x.shards[h[0]]
	s.mu.RLock()
	i, ok := s.m[h]
	s.mu.RUnlock()
	return i, ok
}

// get returns the entry of the key with hash h, or nil.
func (x *index) get(h authz.KeyHash) *keyEntry {
	i, ok := x.lookup(h)
	if !ok {
		return nil
	}
	return x.keys.at(i)
}

// addAccount adds an account entry for id, which must have accountIDLen
// bytes, and returns its number. Callers of addAccount and addKey
// serialize.
func (x *index) addAccount(id string) (uint32, *accountEntry) {
	i, a := x.accounts.add()
	copy(a.id[:], id)
	return i, a
}

// addKey adds an entry for the key id of account, under h, which must not
// be present; id must have keyIDLen bytes. set fills the entry before it is
// published.
func (x *index) addKey(h authz.KeyHash, id string, account uint32, set func(*keyEntry)) {
	i, e := x.keys.add()
	copy(e.id[:], id)
	e.account = account
	set(e)
	s := &x.shards[h[0]]
	s.mu.Lock()
	s.m[h] = i
	s.mu.Unlock()
}

// credential is what LookupKey reports of e.
func (x *index) credential(e *keyEntry) authz.Credential {
	a := x.accounts.at(e.account)
	return authz.Credential{
		KeyID:           e.keyID(),
		AccountID:       a.accountID(),
		ExpireTime:      timeOf(e.expire.Load()),
		Revoked:         e.revoked.Load(),
		AccountDisabled: a.disabled.Load(),
		Balance:         a.balance.Load(),
	}
}

// minUseStep is how much newer a use must be than the recorded one to be
// recorded: it keeps MarkUsed on a busy key to one atomic load.
const minUseStep = int64(time.Second)

// markUsed raises entry i's last-used time to t and queues it for flushing.
func (x *index) markUsed(i uint32, t time.Time) {
	e := x.keys.at(i)
	n, ok := unixNano(t)
	if !ok || n == 0 {
		return
	}
	for {
		old := e.lastUsed.Load()
		if n < old+minUseStep {
			return
		}
		if e.lastUsed.CompareAndSwap(old, n) {
			break
		}
	}
	x.queue(i)
}

// queue puts entry i on the dirty list unless it is there already.
func (x *index) queue(i uint32) {
	e := x.keys.at(i)
	if !e.dirty.CompareAndSwap(false, true) {
		return
	}
	link := i + 1
	for {
		head := x.dirty.Load()
		e.next.Store(head)
		if x.dirty.CompareAndSwap(head, link) {
			return
		}
	}
}

// takeDirty empties the dirty list and returns its entry numbers, marked
// clean: a use recorded from now on queues an entry again.
func (x *index) takeDirty() []uint32 {
	var is []uint32
	for link := x.dirty.Swap(0); link != 0; {
		e := x.keys.at(link - 1)
		is = append(is, link-1)
		link = e.next.Load() // read before e may be queued again
		e.dirty.Store(false)
	}
	return is
}

// size returns the number of keys.
func (x *index) size() int { return int(x.keys.n.Load()) }
