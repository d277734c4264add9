//go:build linux

package bolt

import (
	"syscall"

	"go.etcd.io/bbolt"
)

// releasePages drops from this process's memory the pages of the first
// size bytes of db's file mapping, which loading the index has read: from
// then on reads of keys come from the index, and bbolt faults in again,
// from the kernel's page cache, the few pages a write or a list needs.
// Without it a million keys would keep their whole file resident. It is
// only advice: a failure leaves the pages where they are.
func releasePages(db *bbolt.DB, size int64) {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, uintptr(size), syscall.MADV_DONTNEED)
}
