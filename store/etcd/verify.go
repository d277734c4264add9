package etcd

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// Verify reads every record under prefix at one revision and checks that
// they agree with each other, as every transaction of this package leaves
// them: each key's hash is claimed by it and it is listed under its
// account, which exists; each claim and listing names such a key; each
// account's ledger counts from 1 to its seq and sums to its balance; each
// idempotency key names an entry that carries it. It returns every
// disagreement found, joined.
func Verify(ctx context.Context, cli *clientv3.Client, prefix string) error {
	prefix = withSlash(prefix)
	l := layout(prefix)
	kvs := map[string][]byte{}
	_, err := readAll(ctx, cli, prefix, 0, time.Minute, func(kv *mvccpb.KeyValue) error {
		kvs[string(kv.Key)] = kv.Value
		return nil
	})
	if err != nil {
		return err
	}

	has := func(k string) bool { _, ok := kvs[k]; return ok }
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	under := func(dir string, visit func(rest string, v []byte)) {
		for k, v := range kvs {
			if rest, ok := strings.CutPrefix(k, prefix+dir); ok {
				visit(rest, v)
			}
		}
	}
	accounts := map[string]*storagev1.AccountRecord{}
	under(accountDir, func(id string, v []byte) {
		if r, err := record.Decode[storagev1.AccountRecord](v); err != nil {
			bad("account %s: %v", id, err)
		} else {
			accounts[id] = r
		}
	})
	under(keyDir, func(rest string, v []byte) {
		_, id, _ := strings.Cut(rest, "/") // after the shard
		r, err := record.Decode[storagev1.KeyRecord](v)
		switch {
		case err != nil:
			bad("key %s: %v", id, err)
		case accounts[r.AccountId] == nil:
			bad("key %s: account %s does not exist", id, r.AccountId)
		case string(kvs[prefix+hashDir+hex.EncodeToString(r.Hash)]) != id:
			bad("key %s: its hash is not claimed by it", id)
		case !has(l.accountKeys(r.AccountId) + id):
			bad("key %s: not listed under account %s", id, r.AccountId)
		}
	})
	under(hashDir, func(h string, v []byte) {
		if !has(l.key(string(v))) {
			bad("hash %s: claimed by key %s, which does not exist", h, v)
		}
	})
	under(accountKeyDir, func(rest string, _ []byte) {
		if _, id, _ := strings.Cut(rest, "/"); !has(l.key(id)) {
			bad("account key %s: the key does not exist", rest)
		}
	})
	for id, a := range accounts {
		var sum int64
		for seq := uint64(1); seq <= a.LedgerSeq; seq++ {
			e, err := record.Decode[storagev1.LedgerRecord](kvs[l.ledgerEntry(id, seq)])
			if err != nil || e.Seq != seq {
				bad("account %s: ledger entry %d is missing or broken", id, seq)
				break
			}
			if e.Kind == storagev1.LedgerRecord_KIND_DEBIT {
				sum -= e.Amount
			} else {
				sum += e.Amount
			}
			if e.BalanceAfter != sum {
				bad("account %s: ledger entry %d says balance %d, the entries sum to %d", id, seq, e.BalanceAfter, sum)
			}
		}
		if has(l.ledgerEntry(id, a.LedgerSeq+1)) {
			bad("account %s: the ledger goes past seq %d", id, a.LedgerSeq)
		}
		if sum != a.Balance {
			bad("account %s: balance %d, the ledger sums to %d", id, a.Balance, sum)
		}
	}
	under(idempotencyDir, func(rest string, v []byte) {
		id, key, _ := strings.Cut(rest, "/")
		seq, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil {
			bad("idempotency key %q of %s: holds %q", key, id, v)
			return
		}
		if e, err := record.Decode[storagev1.LedgerRecord](kvs[l.ledgerEntry(id, seq)]); err != nil || e.IdempotencyKey != key {
			bad("idempotency key %q of %s: entry %d does not carry it", key, id, seq)
		}
	})
	return errors.Join(errs...)
}

// readPage is how many records readAll reads per request.
const readPage = 20000

// readAll calls visit for every record under the prefix from, in key order,
// at revision rev (0: the current one), which it returns. It reads in
// pages, each bounded by pageTimeout.
func readAll(ctx context.Context, cli *clientv3.Client, from string, rev int64, pageTimeout time.Duration, visit func(kv *mvccpb.KeyValue) error) (int64, error) {
	for end := clientv3.GetPrefixRangeEnd(from); ; {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(readPage)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		pctx, cancel := context.WithTimeout(ctx, pageTimeout)
		resp, err := cli.Get(pctx, from, opts...)
		cancel()
		if err != nil {
			return 0, err
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := visit(kv); err != nil {
				return 0, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
