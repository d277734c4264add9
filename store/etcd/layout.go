package etcd

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/keygate/keygate/authz"
)

// layout names the etcd keys of one keygate prefix. See the package doc.
type layout string

// Sub-prefixes. Only watched records live under watchedDir, so that one
// watch sees accounts and keys in commit order and nothing else.
const (
	schemaKey      = "schema"
	watchedDir     = "w/"
	accountDir     = watchedDir + "a/"
	keyDir         = watchedDir + "k/"
	hashDir        = "hash/"
	accountKeyDir  = "account-key/"
	ledgerDir      = "ledger/"
	idempotencyDir = "idempotency/"
	usedDir        = "used/"
)

// schemaVersion is the layout this package reads and writes.
const schemaVersion = "1"

func (l layout) schema() string              { return string(l) + schemaKey }
func (l layout) watched() string             { return string(l) + watchedDir }
func (l layout) accounts() string            { return string(l) + accountDir }
func (l layout) account(id string) string    { return string(l) + accountDir + id }
func (l layout) key(id string) string        { return l.keyShard(shardOf(id)) + id }
func (l layout) used(keyID string) string    { return string(l) + usedDir + keyID }
func (l layout) hash(h authz.KeyHash) string { return string(l) + hashDir + hex.EncodeToString(h[:]) }

func (l layout) accountKeys(accountID string) string {
	return string(l) + accountKeyDir + accountID + "/"
}

func (l layout) ledger(accountID string) string { return string(l) + ledgerDir + accountID + "/" }

// ledgerEntry is the key of an entry: the seq in fixed-width hex, so that
// keys sort in seq order.
func (l layout) ledgerEntry(accountID string, seq uint64) string {
	return fmt.Sprintf("%s%016x", l.ledger(accountID), seq)
}

func (l layout) idempotency(accountID, key string) string {
	return string(l) + idempotencyDir + accountID + "/" + key
}

// keyShards is the number of ranges key records are spread over. etcd
// counts every key from a range's start to its end to answer a limited
// read, so reading a range of n keys in pages costs n²/page: shards keep n
// small when a replica loads millions of keys.
const keyShards = 256

// shardOf is the shard of a key id: the low byte of its FNV-1a hash, as two
// hex digits. It must never change.
func shardOf(id string) string {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return fmt.Sprintf("%02x", h&0xff)
}

// keyShard is the prefix of the key records of one shard.
func (l layout) keyShard(shard string) string { return string(l) + keyDir + shard + "/" }

// watchedID splits the key of a watched record into its kind (accountDir or
// keyDir) and id.
func (l layout) watchedID(key string) (dir, id string, ok bool) {
	rest, ok := strings.CutPrefix(key, string(l))
	if !ok {
		return "", "", false
	}
	if id, ok := strings.CutPrefix(rest, accountDir); ok {
		return accountDir, id, true
	}
	if rest, ok := strings.CutPrefix(rest, keyDir); ok {
		if shard, id, ok := strings.Cut(rest, "/"); ok && shard == shardOf(id) {
			return keyDir, id, true
		}
	}
	return "", "", false
}

// encodeTime encodes a last-used time so that etcd's byte-wise comparison
// of values orders times: 16 hex digits of Unix nanoseconds.
func encodeTime(n int64) string { return fmt.Sprintf("%016x", n) }

func decodeTime(v []byte) int64 {
	n, err := strconv.ParseInt(string(v), 16, 64)
	if err != nil || len(v) != 16 {
		return 0
	}
	return n
}
