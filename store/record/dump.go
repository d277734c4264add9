package record

import storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"

// Dump is every record of a store, read at one revision, as a migration
// copies it from one store to another. Idempotency keys are the
// IdempotencyKey of the ledger entries they name; last-used times are in
// the key records.
type Dump struct {
	Accounts []*storagev1.AccountRecord
	Keys     []*storagev1.KeyRecord
	Ledger   []*storagev1.LedgerRecord
	// Revision is the store's revision the records were read at: bbolt's
	// transaction id, or etcd's revision. Restore and Import ignore it.
	Revision int64
}
