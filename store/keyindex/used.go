package keyindex

import (
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/record"
)

// minUseStep is how much newer a use must be than the recorded one to be
// recorded: it keeps MarkUsed on a busy key to one atomic load.
const minUseStep = int64(time.Second)

// MarkUsed raises the last-used time of the key with hash h to t, and
// queues the key for TakeUsed. A time less than a second newer than the
// recorded one is ignored.
func (x *Index) MarkUsed(h authz.KeyHash, t time.Time) {
	e, i := x.get(&h)
	if e == nil {
		return
	}
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

// LastUsed returns the newest last-used time known of the key with hash h,
// in Unix ns, stored or not; 0 if none or the key is unknown.
func (x *Index) LastUsed(h authz.KeyHash) int64 {
	if e, _ := x.get(&h); e != nil {
		return e.lastUsed.Load()
	}
	return 0
}

// queue puts entry i on the dirty list unless it is there already.
func (x *Index) queue(i uint32) {
	e := x.keys.at(i)
	if e.flags.Or(dirty)&dirty != 0 {
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

// Use is a last-used time for a store to write.
type Use struct {
	KeyID string // shares the index's memory
	Time  int64  // Unix ns
	entry uint32
}

// TakeUsed returns the last-used times recorded since the last call, of
// keys that lookups find. A use recorded from now on is returned by the
// next call.
func (x *Index) TakeUsed() []Use {
	var us []Use
	for link := x.dirty.Swap(0); link != 0; {
		e := x.keys.at(link - 1)
		u := Use{KeyID: e.keyID(), entry: link - 1}
		link = e.next.Load() // read before e may be queued again
		f := e.flags.And(^uint32(dirty))
		if u.Time = e.lastUsed.Load(); f&dead == 0 {
			us = append(us, u)
		}
	}
	return us
}

// Requeue gives back to the next TakeUsed the uses a store failed to write.
func (x *Index) Requeue(us []Use) {
	for _, u := range us {
		x.queue(u.entry)
	}
}
