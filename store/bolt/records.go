package bolt

import (
	"encoding/binary"

	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/store/record"
)

// This file holds what only the bolt store needs of records: writing them
// to buckets and building bucket keys. The rules every store shares
// (conversions, balance changes, pages) are in package record.

// put writes a record under key.
func put(b *bbolt.Bucket, key []byte, r proto.Message) error {
	v, err := record.Encode(r)
	if err != nil {
		return err
	}
	return b.Put(key, v)
}

// beUint64 encodes ledger seqs and the schema version.
func beUint64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// parseBEUint64 is the inverse of beUint64; it reports whether b has the
// right length.
func parseBEUint64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

func ledgerKey(accountID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(accountID), seq)
}

func idempotencyKey(accountID, key string) []byte {
	return append(append([]byte(accountID), 0), key...)
}

func accountKeyKey(accountID, keyID string) []byte {
	return append([]byte(accountID), keyID...)
}
