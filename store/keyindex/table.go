package keyindex

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"

	"github.com/keygate/keygate/authz"
)

// chunkBits sets the entries per arena chunk: 2^16 keys are 6.5 MiB, big
// enough for huge pages (see hugePages) to cover most of a chunk.
const chunkBits = 16

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
		c := new([1 << chunkBits]T)
		hugePages(unsafe.Pointer(c), unsafe.Sizeof(*c))
		grown := append(cs[:len(cs):len(cs)], c)
		a.chunks.Store(&grown)
	}
	a.n.Store(i + 1)
	return i, a.at(i)
}

// len returns the number of entries added.
func (a *arena[T]) len() uint32 { return a.n.Load() }

// table is an open-addressing hash table from key hashes to key entry
// numbers. A slot holds an entry number plus one (0 marks an empty slot)
// in its low 32 bits and 32 more bits of the key's hash in its high ones,
// so that a probe rarely reads an entry it does not want. Keys are SHA-256
// hashes, evenly spread: their bytes are the hash. A filled slot is never
// emptied; the writer fills one only after its entry is complete, and may
// point it at a new entry for the same hash.
type table struct {
	slots []atomic.Uint64 // a power of two, at most half full
}

func newTable(size int) *table {
	slots := make([]atomic.Uint64, size)
	hugePages(unsafe.Pointer(&slots[0]), uintptr(size)*unsafe.Sizeof(slots[0]))
	return &table{slots: slots}
}

// probe returns where the search for h starts and the tag of its slots.
func probe(h *authz.KeyHash) (start uint64, tag uint64) {
	return binary.LittleEndian.Uint64(h[0:8]), binary.LittleEndian.Uint64(h[8:16]) << 32
}

// find returns the slot of hash h in t and the number of its entry, or the
// empty slot where h would go.
func (x *Index) find(t *table, h *authz.KeyHash) (slot *atomic.Uint64, n uint32, found bool) {
	mask := uint64(len(t.slots) - 1)
	i, tag := probe(h)
	for ; ; i++ {
		slot = &t.slots[i&mask]
		s := slot.Load()
		if s == 0 {
			return slot, 0, false
		}
		if s&^(1<<32-1) == tag {
			if n = uint32(s) - 1; x.keys.at(n).hash == *h {
				return slot, n, true
			}
		}
	}
}

// set points slot, found for h by find, at entry n.
func set(slot *atomic.Uint64, h *authz.KeyHash, n uint32) {
	_, tag := probe(h)
	slot.Store(tag | uint64(n+1))
}
