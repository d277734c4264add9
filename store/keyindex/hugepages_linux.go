package keyindex

import (
	"syscall"
	"unsafe"
)

// hugePages asks Linux to back the 2 MiB-aligned part of the size bytes at
// p with transparent huge pages, where the system allows it ("madvise" or
// "always" in /sys/kernel/mm/transparent_hugepage/enabled). A lookup reads
// a table slot, a key entry and an account entry at random places in the
// whole index: with 4 KiB pages each read also misses the TLB, and between
// one Check and the next the server's other work evicts the page tables
// from the cache (docs/benchmarks.md has the measurements). Failure leaves
// the memory as it was.
func hugePages(p unsafe.Pointer, size uintptr) {
	const huge = 2 << 20
	skip := (huge - uintptr(p)%huge) % huge
	if size < skip+huge {
		return
	}
	n := (size - skip) &^ (huge - 1)
	_ = syscall.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, skip)), n), syscall.MADV_HUGEPAGE)
}
