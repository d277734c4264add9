/*
Package etcd is keygate's store for many replicas: accounts, keys and
ledgers in an etcd cluster, and in every replica an in-memory copy of every
account and key that answers LookupKey and MarkUsed without network I/O,
without a global lock and without allocating.

# Following etcd

Open reads every account and key at one etcd revision, then watches them
from that revision. Each change is applied in memory in revision order,
once: the write that made a change applies it at once, so that the next
LookupKey on this replica sees it, and the watch brings it to every other
replica. When the watch is cut, it is resumed from the last revision
applied; when that revision has been compacted away, the replica loads a
new snapshot and merges it into memory, answering checks from the old
state meanwhile. Key records are spread over 256 ranges (shards) so that a
snapshot of millions of keys reads in linear time: etcd counts every key
of a range on each limited read.

Every heartbeat (a tenth of Options.MaxStaleness, at most a second) the
replica asks etcd, on the watch stream, to confirm that it has sent every
change so far; each answer proves the memory complete as of the time the
request was sent (etcd answers only watches that start at or before its
current revision, so a watch is started anew when its requests go
unanswered). Stats.Lag is the time since the newest such proof. When
the lag passes MaxStaleness (the cluster is down, has lost quorum, or is
unreachable), LookupKey and Ready fail with EUnavailable instead of
answering from memory that may miss a revocation; they answer again as
soon as the replica has caught up. Watches require a leader, so a member
cut off from its cluster ends the watch rather than holding it silent.

# Writes

Every write is one etcd transaction. Changes of an existing record compare
its mod revision with the one read and retry from a fresh read when another
writer got in first, so concurrent debits on many replicas never lose an
update; a replica serializes its own changes of one account first so that
they do not make each other retry. A credit or debit claims its idempotency
key in the same transaction that writes the balance and the ledger entry,
so a request retried on another replica is applied once. A new key claims
its hash in the transaction that writes it. A transaction is atomic: a
replica that dies mid-write leaves the change whole or absent.

Each call to etcd, and each write with its retries, is bounded by
Options.RequestTimeout; when etcd cannot serve (no quorum, unreachable,
out of space) methods fail with EUnavailable.

Last-used times are kept in memory and written every Options.FlushInterval
in transactions of up to 100 keys, each time written only if it is newer
than the stored one; they are stored beside the keys (not in the watched
records), so they never wake the other replicas' watches.

# Layout

Under the prefix given to Open (say /keygate/), with records the protobuf
messages of keygate.storage.v1:

	schema                         "1"
	w/a/<account id>               AccountRecord (watched)
	w/k/<shard>/<key id>           KeyRecord (watched); shard: 2 hex digits of the id's FNV-1a hash
	hash/<hex SHA-256>             key id: claims a secret's hash
	account-key/<account>/<key>    empty: lists an account's keys
	ledger/<account>/<016x seq>    LedgerRecord
	idempotency/<account>/<key>    ledger seq, decimal
	used/<key id>                  last-used time, 16 hex digits of Unix ns

The behaviour where authz leaves a choice is the bolt store's, pinned down
by the storetest suite.

# Caveats

keygate never deletes records. A replica forgets a key whose record is
deleted by hand (keeping its hundred-odd bytes of memory until it restarts:
see package keyindex), and ignores deleted accounts. Every replica holds
every key in memory, in the bolt store's index, without Go pointers for
the garbage collector to scan (docs/scaling.md gives the bytes a key). etcd's history grows with every
write, last-used flushes included: run etcd with auto-compaction (see
docs/scaling.md). Last-used times recorded since the last flush are lost if
the process dies without Close.
*/
package etcd
