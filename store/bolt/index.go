package bolt

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/record"
)

// The index holds no Go pointers: entries live in arenas of fixed-size
// chunks and refer to each other by number, ids are byte arrays, and the
// hash table maps to numbers. So the garbage collector never scans it, and
// a million keys cost about 130 bytes each.

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
	hash    authz.KeyHash
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

// index maps key hashes to entries, in an open-addressing hash table that
// readers search without a lock while one writer adds to it.
type index struct {
	table    atomic.Pointer[table]
	keys     arena[keyEntry]
	accounts arena[accountEntry]
	dirty    atomic.Uint32 // head of the list of entries to flush, as in keyEntry.next
}

// table is the hash table of an index. A slot holds an entry number plus one
// (0 marks an empty slot) in its low 32 bits and 32 more bits of the key's
// hash in its high ones, so that a probe rarely reads an entry it does not
// want. Keys are SHA-256 hashes, evenly spread: their bytes are the hash.
// Slots are only ever filled, never emptied; the writer fills one only
// after its entry is complete.
type table struct {
	slots []atomic.Uint64 // a power of two, at most half full
}

func newTable(size int) *table { return &table{slots: make([]atomic.Uint64, size)} }

// probe returns where the search for h starts and the tag of its slots.
func probe(h *authz.KeyHash) (start uint64, tag uint64) {
	return binary.LittleEndian.Uint64(h[0:8]), binary.LittleEndian.Uint64(h[8:16]) << 32
}

func newIndex() *index {
	x := new(index)
	x.table.Store(newTable(1024))
	return x
}

// lookup returns the entry number of the key with hash h.
func (x *index) lookup(h authz.KeyHash) (uint32, bool) {
	t := x.table.Load()
	mask := uint64(len(t.slots) - 1)
	i, tag := probe(&h)
	for ; ; i++ {
		s := t.slots[i&mask].Load()
		if s == 0 {
			return 0, false
		}
		if s&^(1<<32-1) == tag {
			if n := uint32(s) - 1; x.keys.at(n).hash == h {
				return n, true
			}
		}
	}
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
	n, e := x.keys.add()
	e.hash = h
	copy(e.id[:], id)
	e.account = account
	set(e)
	t := x.table.Load()
	if 2*(int(n)+1) > len(t.slots) {
		t = x.grown(t)
	}
	t.insert(h, n)
}

// grown returns a table twice the size of t with t's keys, and publishes it.
func (x *index) grown(t *table) *table {
	g := newTable(2 * len(t.slots))
	for i := range t.slots {
		if s := t.slots[i].Load(); s != 0 {
			g.insert(x.keys.at(uint32(s)-1).hash, uint32(s)-1)
		}
	}
	x.table.Store(g)
	return g
}

func (t *table) insert(h authz.KeyHash, n uint32) {
	mask := uint64(len(t.slots) - 1)
	i, tag := probe(&h)
	for t.slots[i&mask].Load() != 0 {
		i++
	}
	t.slots[i&mask].Store(tag | uint64(n+1))
}

// credential is what LookupKey reports of e.
func (x *index) credential(e *keyEntry) authz.Credential {
	a := x.accounts.at(e.account)
	return authz.Credential{
		KeyID:           e.keyID(),
		AccountID:       a.accountID(),
		ExpireTime:      record.Time(e.expire.Load()),
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
	n, ok := record.UnixNano(t)
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
