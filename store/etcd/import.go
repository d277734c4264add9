package etcd

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
)

// Import adds the records of d, new accounts with their keys and ledgers
// as record.NewImport makes them, to the prefix in use.
//
// Each account is written with its keys in one transaction, or, past 39
// keys, in several, its own record last: until then replicas hold its keys
// under an account they do not know, without balance, and deny them. Each
// transaction claims its keys' hashes only if no key holds them. When an
// account cannot be written, Import deletes the accounts it wrote before
// and fails, with an *record.ImportError when a hash or the account's id
// was taken: nothing of d stays, unless the process dies midway, which
// leaves the accounts written so far (Verify reports the keys of one left
// without its record). Into an empty prefix, Restore is all or nothing.
func (s *Store) Import(ctx context.Context, d record.Dump) error {
	if s.closed.Load() {
		return errClosed
	}
	keys := make(map[string][]*storagev1.KeyRecord)
	for _, r := range d.Keys {
		keys[r.AccountId] = append(keys[r.AccountId], r)
	}
	ledger := make(map[string][]*storagev1.LedgerRecord)
	for _, r := range d.Ledger {
		ledger[r.AccountId] = append(ledger[r.AccountId], r)
	}
	var written []string
	for i, a := range d.Accounts {
		err := importAccount(ctx, s.cli, s.l, a, keys[a.Id], ledger[a.Id], &written)
		if errors.Is(err, errGuardFailed) {
			err = &record.ImportError{Accounts: []record.AccountError{{Index: i, Err: record.ErrHashTaken}}}
		}
		if err != nil {
			if uerr := deleteAll(ctx, s.cli, written); uerr != nil {
				return fmt.Errorf("%w; deleting the accounts imported before it failed too, and some remain: %w", err, uerr)
			}
			return err
		}
	}
	return nil
}

// importAccount writes account a with its keys and ledger entries in
// transactions of up to restoreOps writes, a's record last, and appends
// the etcd keys it wrote to written.
func importAccount(ctx context.Context, cli *clientv3.Client, l layout, a *storagev1.AccountRecord,
	keys []*storagev1.KeyRecord, ledger []*storagev1.LedgerRecord, written *[]string) error {
	var ops []clientv3.Op
	var guards []clientv3.Cmp
	commitOps := func() error {
		if err := commit(ctx, cli, guards, ops...); err != nil {
			return err
		}
		for _, op := range ops {
			*written = append(*written, string(op.KeyBytes()))
		}
		ops, guards = nil, nil
		return nil
	}
	add := func(more []clientv3.Op, guard ...clientv3.Cmp) error {
		if len(ops)+len(more) > restoreOps {
			if err := commitOps(); err != nil {
				return err
			}
		}
		ops, guards = append(ops, more...), append(guards, guard...)
		return nil
	}
	for _, r := range keys {
		kops, err := l.keyWrites(r)
		if err == nil {
			err = add(kops, notExists(l.hash(authz.KeyHash(r.Hash))))
		}
		if err != nil {
			return err
		}
	}
	for _, r := range ledger {
		lops, err := l.ledgerWrites(r)
		if err == nil {
			err = add(lops)
		}
		if err != nil {
			return err
		}
	}
	op, err := l.accountWrite(a)
	if err == nil {
		err = add([]clientv3.Op{op}, notExists(l.account(a.Id)))
	}
	if err == nil {
		err = commitOps()
	}
	return err
}

// deleteAll deletes the given etcd keys, in transactions of up to
// restoreOps.
func deleteAll(ctx context.Context, cli *clientv3.Client, keys []string) error {
	for start := 0; start < len(keys); start += restoreOps {
		var ops []clientv3.Op
		for _, k := range keys[start:min(start+restoreOps, len(keys))] {
			ops = append(ops, clientv3.OpDelete(k))
		}
		if err := commit(ctx, cli, nil, ops...); err != nil {
			return err
		}
	}
	return nil
}
