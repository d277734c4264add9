package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// dumpPageTimeout bounds each read and write of Dump and Restore.
const dumpPageTimeout = time.Minute

// Dump reads every record under prefix at one etcd revision, which it
// returns: a consistent copy even while replicas write.
func Dump(ctx context.Context, cli *clientv3.Client, prefix string) (record.Dump, int64, error) {
	l := layout(withSlash(prefix))
	var d record.Dump
	used := map[string]int64{}
	rev, err := readAll(ctx, cli, string(l), 0, dumpPageTimeout, func(kv *mvccpb.KeyValue) error {
		rest := strings.TrimPrefix(string(kv.Key), string(l))
		var err error
		switch dir, _, _ := strings.Cut(rest, "/"); dir + "/" {
		case "w/":
			err = dumpWatched(&d, rest, kv.Value)
		case ledgerDir:
			var r *storagev1.LedgerRecord
			if r, err = record.Decode[storagev1.LedgerRecord](kv.Value); err == nil {
				d.Ledger = append(d.Ledger, r)
			}
		case usedDir:
			used[strings.TrimPrefix(rest, usedDir)] = decodeTime(kv.Value)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", kv.Key, err)
		}
		return nil
	})
	if err != nil {
		return record.Dump{}, 0, err
	}
	if rev != 0 && len(d.Accounts)+len(d.Keys) == 0 {
		if resp, err := cli.Get(ctx, l.schema(), clientv3.WithRev(rev)); err != nil || len(resp.Kvs) == 0 {
			return record.Dump{}, 0, errors.Join(err, fmt.Errorf("no keygate data under %s", l))
		}
	}
	for _, k := range d.Keys {
		k.LastUsedTime = max(k.LastUsedTime, used[k.Id])
	}
	return d, rev, nil
}

func dumpWatched(d *record.Dump, rest string, v []byte) error {
	switch {
	case strings.HasPrefix(rest, accountDir):
		r, err := record.Decode[storagev1.AccountRecord](v)
		if err == nil {
			d.Accounts = append(d.Accounts, r)
		}
		return err
	case strings.HasPrefix(rest, keyDir):
		r, err := record.Decode[storagev1.KeyRecord](v)
		if err == nil {
			d.Keys = append(d.Keys, r)
		}
		return err
	}
	return nil
}

// restoreOps is how many writes one transaction of Restore makes.
const restoreOps = 120

// Restore writes d under prefix, which must be empty, in transactions of
// up to 120 writes, and the schema version last: until then no keygate
// opens the prefix (it holds data but no schema), so no replica ever sees
// part of d. A Restore that fails leaves a prefix that keygate refuses;
// delete it (etcdctl del --prefix) before trying again.
func Restore(ctx context.Context, cli *clientv3.Client, prefix string, d record.Dump) error {
	l := layout(withSlash(prefix))
	var ops []clientv3.Op
	put := func(k string, v []byte) { ops = append(ops, clientv3.OpPut(k, string(v))) }
	for _, r := range d.Accounts {
		v, err := record.Encode(r)
		if err != nil {
			return err
		}
		put(l.account(r.Id), v)
	}
	for _, r := range d.Keys {
		if len(r.Hash) != len(authz.KeyHash{}) {
			return fmt.Errorf("key %s has a %d-byte hash", r.Id, len(r.Hash))
		}
		v, err := record.Encode(r)
		if err != nil {
			return err
		}
		put(l.key(r.Id), v)
		put(l.hash(authz.KeyHash(r.Hash)), []byte(r.Id))
		put(l.accountKeys(r.AccountId)+r.Id, nil)
	}
	for _, r := range d.Ledger {
		v, err := record.Encode(r)
		if err != nil {
			return err
		}
		put(l.ledgerEntry(r.AccountId, r.Seq), v)
		if r.IdempotencyKey != "" {
			put(l.idempotency(r.AccountId, r.IdempotencyKey), []byte(strconv.FormatUint(r.Seq, 10)))
		}
	}
	empty := clientv3.Compare(clientv3.CreateRevision(string(l)), "=", 0).WithPrefix()
	for start := 0; start < len(ops); start += restoreOps {
		guard := empty // the first transaction finds the prefix empty,
		if start > 0 { // the others find no schema: no one opened it meanwhile
			guard = notExists(l.schema())
		}
		if err := commit(ctx, cli, guard, ops[start:min(start+restoreOps, len(ops))]...); err != nil {
			return err
		}
	}
	guard := notExists(l.schema())
	if len(ops) == 0 {
		guard = empty
	}
	return commit(ctx, cli, guard, clientv3.OpPut(l.schema(), schemaVersion))
}

// commit runs ops if guard holds.
func commit(ctx context.Context, cli *clientv3.Client, guard clientv3.Cmp, ops ...clientv3.Op) error {
	ctx, cancel := context.WithTimeout(ctx, dumpPageTimeout)
	defer cancel()
	resp, err := cli.Txn(ctx).If(guard).Then(ops...).Commit()
	switch {
	case err != nil:
		return err
	case !resp.Succeeded:
		return errors.New("the prefix is not empty, or another keygate started on it meanwhile")
	}
	return nil
}

func withSlash(prefix string) string {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}
