//go:build linux

package bolt

import (
	"syscall"

	"go.etcd.io/bbolt"
)

// releasePages drops from this process's memory the pages of the first
// size bytes of db's file mapping. Reads of keys come from the index, yet
// the file's pages stay mapped once touched: loading the index touches them
// all, and every page a write or a flush faults in brings up to 15 cached
// neighbours with it (the kernel's fault-around), so that a flush maps
// many times what it writes (docs/benchmarks.md). bbolt faults in again, from
// the kernel's page cache, the pages it needs. The caller holds a read
// transaction, so that bbolt cannot remap the file meanwhile. It is only
// advice: a failure leaves the pages where they are.
func releasePages(db *bbolt.DB, size int64) {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, uintptr(size), syscall.MADV_DONTNEED)
}
