package main

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
)

// gcHeadroom is how much the heap may grow past the live heap before a
// collection, when GOGC is not set.
const gcHeadroom = 32 << 20

// tuneGC returns to the OS the memory that loading the store freed, and
// sets the GC percentage so that the heap may grow by about gcHeadroom
// between collections, instead of by GOGC's default 100% of the live heap,
// which with a million keys in the index would double keygate's resident
// memory. The index holds no pointers, so frequent collections stay cheap.
// It returns the percentage set, or -1 when GOGC is set.
func tuneGC() int {
	debug.FreeOSMemory()
	if _, set := os.LookupEnv("GOGC"); set {
		return -1
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	live := sample[0].Value.Uint64()
	percent := 100
	if live > 0 {
		percent = int(min(100, max(10, gcHeadroom*100/live)))
	}
	debug.SetGCPercent(percent)
	return percent
}
