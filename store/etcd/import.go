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

// ImportError is the error of an Import that met an account it could not
// add.
type ImportError struct {
	AccountID string
	Err       error
}

func (e *ImportError) Error() string {
	return fmt.Sprintf("import: account %s: %v", e.AccountID, e.Err)
}

// Unwrap returns the account's error.
func (e *ImportError) Unwrap() error { return e.Err }

var errImportHashTaken = authz.Errorf(authz.EConflict, "one of its keys has the hash of a stored key")

// Import adds d under prefix: new accounts, with fresh ids, their keys and
// their ledger entries, as keygate import makes them.
//
// Into an empty prefix Import is Restore: all or nothing, even if the
// process dies. Into a prefix in use, each account is written with its keys
// in one transaction, or, past 39 keys, in several, its own record last:
// until then replicas hold its keys under an account they do not know,
// without balance, and deny them. Each transaction claims its keys' hashes
// only if no key holds them. When an account cannot be written, Import
// deletes the accounts it wrote before and fails, with an *ImportError
// when a hash was taken: nothing of d stays, unless the process dies
// midway, which leaves the accounts written so far (Verify reports the
// keys of one left without its record).
func Import(ctx context.Context, cli *clientv3.Client, prefix string, d record.Dump) error {
	l := layout(withSlash(prefix))
	rctx, cancel := context.WithTimeout(ctx, dumpPageTimeout)
	resp, err := cli.Get(rctx, l.schema())
	cancel()
	switch {
	case err != nil:
		return err
	case len(resp.Kvs) == 0:
		return Restore(ctx, cli, prefix, d)
	case string(resp.Kvs[0].Value) != schemaVersion:
		return fmt.Errorf("schema version %q is not the one this keygate supports (%s)", resp.Kvs[0].Value, schemaVersion)
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
	for _, a := range d.Accounts {
		if err := importAccount(ctx, cli, l, a, keys[a.Id], ledger[a.Id], &written); err != nil {
			if uerr := deleteAll(ctx, cli, written); uerr != nil {
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
			return importError(a.Id, err)
		}
	}
	for _, r := range ledger {
		lops, err := l.ledgerWrites(r)
		if err == nil {
			err = add(lops)
		}
		if err != nil {
			return importError(a.Id, err)
		}
	}
	op, err := l.accountWrite(a)
	if err == nil {
		err = add([]clientv3.Op{op}, notExists(l.account(a.Id)))
	}
	if err == nil {
		err = commitOps()
	}
	return importError(a.Id, err)
}

// importError makes an *ImportError of a failed guard; it passes other
// errors through.
func importError(accountID string, err error) error {
	if errors.Is(err, errGuardFailed) {
		return &ImportError{AccountID: accountID, Err: errImportHashTaken}
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
