package bolt

import (
	"bytes"

	"go.etcd.io/bbolt"
)

// scan calls visit for up to n entries of b whose keys start with prefix
// and sort after after (from the first such entry if after is nil), in key
// order. It reports whether more entries follow. k and v are valid only
// during the call.
func scan(b *bbolt.Bucket, prefix, after []byte, n int, visit func(k, v []byte) error) (more bool, err error) {
	c := b.Cursor()
	var k, v []byte
	if after == nil {
		k, v = c.Seek(prefix)
	} else if k, v = c.Seek(after); bytes.Equal(k, after) {
		k, v = c.Next()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if n == 0 {
			return true, nil
		}
		if err := visit(k, v); err != nil {
			return false, err
		}
		n--
	}
	return false, nil
}
