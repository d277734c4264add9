package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/etcd"
	"github.com/keygate/keygate/store/record"
)

const migrateSynopsis = `keygate migrate [--to etcd|bolt] --db FILE --etcd-endpoints URLS [flags]

Copies every account, key (with its hash, hint, times and rotation), ledger
entry and idempotency key from one store to the other, ids and all.

--to etcd (the default) copies the bbolt database FILE, which no keygate
serve may hold open, into the etcd prefix, which must be empty. The schema
key is written last, so no replica starts on a half-copied prefix; a copy
that fails leaves a prefix keygate refuses: delete it with
"etcdctl del --prefix" and run again.

--to bolt copies the etcd prefix, read at one revision, into FILE, which
must not exist. Writes made on etcd after that revision are not copied:
stop the replicas' admin traffic first.

The copy is checked: every record must agree with the others (the checks
of record.Verify), and a new bbolt file must open, which checks every
account and key.`

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", migrateSynopsis, stdout)
	var e EtcdConfig
	db := fs.String("db", "keygate.db", "bbolt database `file`")
	ef := addEtcdFlags(fs, &e)
	fs.bindEnvAll()
	to := fs.String("to", storeEtcd, "`store` to copy into: etcd (from --db) or bolt (into --db)")
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := wantArgs("migrate", pos); err != nil {
		return err
	}
	if *to != storeEtcd && *to != storeBolt {
		return usagef("--to is %s or %s, not %q", storeEtcd, storeBolt, *to)
	}
	if err := ef.apply(); err != nil {
		return err
	}
	cli, err := etcdClient(e)
	if err != nil {
		return err
	}
	defer cli.Close()

	var d record.Dump
	if *to == storeEtcd {
		s, err := bolt.Open(*db, bolt.Options{})
		if err != nil {
			return dbOpenError(err, *db)
		}
		d, err = s.Dump(ctx)
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", *db, err)
		}
		if err := etcd.Restore(ctx, cli, e.Prefix, d); err != nil {
			return fmt.Errorf("write etcd prefix %s: %w", e.Prefix, err)
		}
		if err := etcd.Verify(ctx, cli, e.Prefix); err != nil {
			return fmt.Errorf("the copy in etcd prefix %s does not check out: %w", e.Prefix, err)
		}
		fmt.Fprintf(stdout, "copied %s to etcd prefix %s: ", *db, e.Prefix)
	} else {
		if d, err = etcd.Dump(ctx, cli, e.Prefix); err != nil {
			return fmt.Errorf("read etcd prefix %s: %w", e.Prefix, err)
		}
		if err := bolt.Restore(*db, d); err != nil {
			return err
		}
		s, err := bolt.Open(*db, bolt.Options{}) // Open checks every key and account as it loads them
		if err != nil {
			return dbOpenError(err, *db)
		}
		if err := errors.Join(s.Verify(ctx), s.Close()); err != nil {
			return fmt.Errorf("the copy in %s does not check out: %w", *db, err)
		}
		fmt.Fprintf(stdout, "copied etcd prefix %s at revision %d to %s: ", e.Prefix, d.Revision, *db)
	}
	fmt.Fprintf(stdout, "%s, %s, %s\n", plural(len(d.Accounts), "account", "accounts"), plural(len(d.Keys), "key", "keys"),
		plural(len(d.Ledger), "ledger entry", "ledger entries"))
	return nil
}
