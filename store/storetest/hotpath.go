package storetest

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

// HotPathAllocs fails t unless LookupKey and MarkUsed, the calls of every
// check, allocate nothing on s. Call it from a test that does not run in
// parallel with others: it counts every allocation of the process.
func HotPathAllocs(t *testing.T, s authz.Store) {
	t.Helper()
	ctx := t.Context()
	a, err := s.CreateAccount(ctx, "acme", 1)
	if err != nil {
		t.Fatal(err)
	}
	k, err := s.CreateKey(ctx, NewKey(a.ID))
	if err != nil {
		t.Fatal(err)
	}
	used := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, found, err := s.LookupKey(ctx, k.Hash); !found || err != nil {
			t.Fatal("LookupKey failed")
		}
		s.MarkUsed(k.Hash, used)
		used = used.Add(2 * time.Second) // every call records a new time
	})
	if allocs != 0 {
		t.Errorf("LookupKey+MarkUsed: %v allocations, want 0", allocs)
	}
}

// HeapInUse returns the bytes of live heap, after collecting garbage, for
// benchmarks that report the memory a store takes a key.
func HeapInUse() uint64 {
	runtime.GC()
	runtime.GC() // the second empties the sync.Pools that the first kept
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLookups runs the calls of checks on x, over the hashes of stored
// keys in a random order (as checks come, and so that no store gains from
// reading its memory in the order it was filled): LookupKey alone,
// serially and in parallel, then LookupKey and MarkUsed in parallel.
func BenchmarkLookups(b *testing.B, x authz.KeyIndex, hashes []authz.KeyHash) {
	hashes = slices.Clone(hashes)
	rand.Shuffle(len(hashes), func(i, j int) { hashes[i], hashes[j] = hashes[j], hashes[i] })
	ctx := b.Context()
	lookup := func(h authz.KeyHash) {
		if _, found, err := x.LookupKey(ctx, h); !found {
			b.Fatal("not found", err)
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			lookup(hashes[i%len(hashes)])
			i++
		}
	})
	parallel := func(markUsed bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for i := rand.IntN(len(hashes)); pb.Next(); i++ {
					h := hashes[i%len(hashes)]
					lookup(h)
					if markUsed {
						x.MarkUsed(h, time.Now())
					}
				}
			})
		}
	}
	b.Run("parallel", parallel(false))
	b.Run("parallel+MarkUsed", parallel(true))
}
