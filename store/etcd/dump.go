package etcd

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// dumpPageTimeout bounds each read and write of Dump and Restore.
const dumpPageTimeout = time.Minute

// Dump reads every record under prefix at one etcd revision: a
// consistent copy even while replicas write.
func Dump(ctx context.Context, cli *clientv3.Client, prefix string) (record.Dump, error) {
	l := layout(withSlash(prefix))
	d, _, err := read(ctx, cli, l)
	if err != nil {
		return record.Dump{}, err
	}
	if len(d.Accounts)+len(d.Keys) == 0 {
		if resp, err := cli.Get(ctx, l.schema(), clientv3.WithRev(d.Revision)); err != nil || len(resp.Kvs) == 0 {
			return record.Dump{}, errors.Join(err, fmt.Errorf("no keygate data under %s", l))
		}
	}
	return d, nil
}

// Dump flushes last-used times, then reads every record of the store at
// one etcd revision.
func (s *Store) Dump(ctx context.Context) (record.Dump, error) {
	if err := s.FlushLastUsed(ctx); err != nil {
		return record.Dump{}, err
	}
	return Dump(ctx, s.cli, string(s.l))
}

// restoreOps is how many writes one transaction of Restore makes.
const restoreOps = 120

// Restore writes d under prefix, which must be empty, in transactions of
// up to 120 writes, and the schema version last: until then no keygate
// opens the prefix (it holds data but no schema), so no replica ever sees
// part of d. Into a prefix that holds data it writes nothing and fails
// with ErrNotEmpty; a Restore that fails after its first write leaves a
// prefix that keygate refuses: delete it (etcdctl del --prefix) before
// trying again.
func Restore(ctx context.Context, cli *clientv3.Client, prefix string, d record.Dump) error {
	l := layout(withSlash(prefix))
	var ops []clientv3.Op
	for _, r := range d.Accounts {
		op, err := l.accountWrite(r)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	for _, r := range d.Keys {
		kops, err := l.keyWrites(r)
		if err != nil {
			return err
		}
		ops = append(ops, kops...)
	}
	for _, r := range d.Ledger {
		lops, err := l.ledgerWrites(r)
		if err != nil {
			return err
		}
		ops = append(ops, lops...)
	}
	empty := clientv3.Compare(clientv3.CreateRevision(string(l)), "=", 0).WithPrefix()
	for start := 0; start < len(ops); start += restoreOps {
		guard := empty // the first transaction finds the prefix empty,
		if start > 0 { // the others find no schema: no one opened it meanwhile
			guard = notExists(l.schema())
		}
		if err := commit(ctx, cli, []clientv3.Cmp{guard}, ops[start:min(start+restoreOps, len(ops))]...); err != nil {
			return restoreError(err, start == 0)
		}
	}
	guard := notExists(l.schema())
	if len(ops) == 0 {
		guard = empty
	}
	return restoreError(commit(ctx, cli, []clientv3.Cmp{guard}, clientv3.OpPut(l.schema(), schemaVersion)), len(ops) == 0)
}

// ErrNotEmpty is returned by Restore into a prefix that holds data; it
// wrote nothing.
var ErrNotEmpty = errors.New("the prefix is not empty")

// restoreError says what a failed guard of Restore means: before the
// first write, that the prefix was not empty; later, that another keygate
// opened it meanwhile.
func restoreError(err error, first bool) error {
	switch {
	case !errors.Is(err, errGuardFailed):
		return err
	case first:
		return ErrNotEmpty
	}
	return errors.New("another keygate started on the prefix during the restore; delete the prefix (etcdctl del --prefix) and retry")
}

// errGuardFailed is returned by commit when its guards do not hold.
var errGuardFailed = errors.New("a compare of the transaction failed")

// commit runs ops if guards hold.
func commit(ctx context.Context, cli *clientv3.Client, guards []clientv3.Cmp, ops ...clientv3.Op) error {
	ctx, cancel := context.WithTimeout(ctx, dumpPageTimeout)
	defer cancel()
	resp, err := cli.Txn(ctx).If(guards...).Then(ops...).Commit()
	switch {
	case err != nil:
		return err
	case !resp.Succeeded:
		return errGuardFailed
	}
	return nil
}

func withSlash(prefix string) string {
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefix
}

// accountWrite is the put of an account record.
func (l layout) accountWrite(r *storagev1.AccountRecord) (clientv3.Op, error) {
	v, err := record.Encode(r)
	return clientv3.OpPut(l.account(r.Id), string(v)), err
}

// keyWrites are the puts of a new key: its record, the claim of its hash
// and its listing under its account.
func (l layout) keyWrites(r *storagev1.KeyRecord) ([]clientv3.Op, error) {
	if len(r.Hash) != len(authz.KeyHash{}) {
		return nil, fmt.Errorf("key %s has a %d-byte hash", r.Id, len(r.Hash))
	}
	v, err := record.Encode(r)
	if err != nil {
		return nil, err
	}
	return []clientv3.Op{
		clientv3.OpPut(l.key(r.Id), string(v)),
		clientv3.OpPut(l.hash(authz.KeyHash(r.Hash)), r.Id),
		clientv3.OpPut(l.accountKeys(r.AccountId)+r.Id, ""),
	}, nil
}

// ledgerWrites are the puts of a ledger entry and of its idempotency key.
func (l layout) ledgerWrites(r *storagev1.LedgerRecord) ([]clientv3.Op, error) {
	v, err := record.Encode(r)
	if err != nil {
		return nil, err
	}
	ops := []clientv3.Op{clientv3.OpPut(l.ledgerEntry(r.AccountId, r.Seq), string(v))}
	if r.IdempotencyKey != "" {
		ops = append(ops, clientv3.OpPut(l.idempotency(r.AccountId, r.IdempotencyKey), strconv.FormatUint(r.Seq, 10)))
	}
	return ops, nil
}
