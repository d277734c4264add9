package bolt

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keygate/keygate/authz"
)

// accountEntry is the in-memory state of an account that LookupKey reports.
// All keys of the account share it, so a change reaches them at once.
type accountEntry struct {
	id       string
	balance  atomic.Int64
	disabled atomic.Bool
}

// keyEntry is the in-memory state of a key. Entries are never replaced or
// removed, since keys are never deleted.
type keyEntry struct {
	id       string
	account  *accountEntry
	expire   atomic.Int64 // Unix ns; 0: never expires
	revoked  atomic.Bool
	lastUsed atomic.Int64 // Unix ns of the newest use known, stored or not
	// dirty is set while the entry is on the index's dirty list, waiting for
	// its lastUsed to be written; next links that list.
	dirty atomic.Bool
	next  atomic.Pointer[keyEntry]
}

func (e *keyEntry) credential() authz.Credential {
	return authz.Credential{
		KeyID:           e.id,
		AccountID:       e.account.id,
		ExpireTime:      timeOf(e.expire.Load()),
		Revoked:         e.revoked.Load(),
		AccountDisabled: e.account.disabled.Load(),
		Balance:         e.account.balance.Load(),
	}
}

// index maps key hashes to entries. It is split into shards by the first
// byte of the hash so that readers of different keys share no lock.
type index struct {
	shards [256]shard
	dirty  atomic.Pointer[keyEntry] // head of the list of entries to flush
	n      atomic.Int64
}

type shard struct {
	mu sync.RWMutex
	m  map[authz.KeyHash]*keyEntry
	// Pad to a cache line so that readers of neighbouring shards do not
	// contend on the line that holds the RWMutex's reader count.
	_ [64 - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[authz.KeyHash]*keyEntry(nil))]byte
}

func newIndex() *index {
	x := new(index)
	for i := range x.shards {
		x.shards[i].m = make(map[authz.KeyHash]*keyEntry)
	}
	return x
}

func (x *index) get(h authz.KeyHash) *keyEntry {
	s := &x.shards[h[0]]
	s.mu.RLock()
	e := s.m[h]
	s.mu.RUnlock()
	return e
}

// add inserts e under h, which must not be present.
func (x *index) add(h authz.KeyHash, e *keyEntry) {
	s := &x.shards[h[0]]
	s.mu.Lock()
	s.m[h] = e
	s.mu.Unlock()
	x.n.Add(1)
}

// minUseStep is how much newer a use must be than the recorded one to be
// recorded: it keeps MarkUsed on a busy key to one atomic load.
const minUseStep = int64(time.Second)

// markUsed raises e's last-used time to t and queues e for flushing.
func (x *index) markUsed(e *keyEntry, t time.Time) {
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
	x.queue(e)
}

// queue puts e on the dirty list unless it is there already.
func (x *index) queue(e *keyEntry) {
	if !e.dirty.CompareAndSwap(false, true) {
		return
	}
	for {
		head := x.dirty.Load()
		e.next.Store(head)
		if x.dirty.CompareAndSwap(head, e) {
			return
		}
	}
}

// takeDirty empties the dirty list and returns its entries, marked clean:
// a use recorded from now on queues an entry again.
func (x *index) takeDirty() []*keyEntry {
	var es []*keyEntry
	for e := x.dirty.Swap(nil); e != nil; {
		next := e.next.Load() // read before e may be queued again
		e.dirty.Store(false)
		es = append(es, e)
		e = next
	}
	return es
}
