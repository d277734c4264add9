//go:build !linux

package bolt

import "go.etcd.io/bbolt"

// releasePages is a no-op off Linux.
func releasePages(*bbolt.DB, int64) {}
