/*
Package bolt is keygate's embedded store: accounts, keys and ledgers in one
bbolt file, and an in-memory index of every key that answers LookupKey and
MarkUsed without disk I/O, without a global lock and without allocating.

Every mutating method commits (with fsync) before it returns, and updates the
in-memory index before it returns, so the next LookupKey sees the change.
Last-used times recorded by MarkUsed are kept in memory and written in one
transaction every Options.FlushInterval, by FlushLastUsed, and by Close.

# Layout

The file holds these buckets. Records are the protobuf messages of
keygate.storage.v1; ids sort by creation time (to the millisecond), so
cursor order is creation order.

	meta          "version" -> schema version, 8-byte big-endian (1)
	accounts      account id -> AccountRecord
	keys          key id -> KeyRecord
	account_keys  account id + key id -> empty
	key_hashes    SHA-256 of a key's secret -> key id (keeps hashes unique)
	ledger        account id + 8-byte big-endian seq -> LedgerRecord
	idempotency   account id + 0x00 + idempotency key -> 8-byte big-endian seq

# Behaviour where authz leaves a choice

  - An account opened with a positive balance gets a LedgerOpen entry with
    seq 1; an account opened at zero gets none (ledger amounts are always
    positive), and its first change has seq 1.
  - A debit attributed to a key that is not a key of the account, or to no
    stored key at all, fails with EInvalid.
  - Page sizes above authz.MaxPageSize are clamped to it; negative sizes are
    EInvalid. Page tokens are the id (or ledger seq) of the last item of the
    previous page.
  - RotateKey uses the replacement's ExpireTime when it is set. A key that has
    already been rotated cannot be rotated again (EConflict).
  - Times must lie between 1970 and 2262 (Unix nanoseconds in an int64): a
    later expiry, or a grace period reaching past it, is EInvalid.
  - Methods look at their context only before they start: a bbolt
    transaction cannot be interrupted. A closed Store answers EUnavailable.

# Caveats

One process per file: Open takes an exclusive flock on the file and fails
with ErrLocked when another process (or another Store in this one) holds it.
Open refuses a file that is not a bbolt database, is corrupt, holds buckets
of another program, or has a newer schema version, and leaves its data
alone; an empty bbolt file is made a keygate database.

Concurrent writes share transactions and their fsync (bbolt's DB.Batch,
waiting up to Options.BatchDelay for company), so that many writers share
one fsync; a lone write waits that delay. Reads of keys never touch the
disk. The index (package keyindex) holds every key in memory, compactly
and without Go pointers, so that the garbage collector does not scan it
(docs/benchmarks.md has the figures for both); once it is
loaded, Open drops the file's pages from the process's memory (Linux).
Last-used times recorded since the last flush are lost if the process dies
without Close.
*/
package bolt
