package etcd

import (
	"context"
	"encoding/hex"
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

// Verify reads every record and index under prefix at one revision and
// checks that they agree (record.Verify).
func Verify(ctx context.Context, cli *clientv3.Client, prefix string) error {
	d, ix, err := read(ctx, cli, layout(withSlash(prefix)))
	if err != nil {
		return err
	}
	return record.Verify(d, ix)
}

// Verify checks the store's records and indexes in etcd, as the package
// function Verify does.
func (s *Store) Verify(ctx context.Context) error { return Verify(ctx, s.cli, string(s.l)) }

// read reads every record and index under l at one revision, with the
// last-used times written beside the keys raised into their records.
func read(ctx context.Context, cli *clientv3.Client, l layout) (record.Dump, record.Indexes, error) {
	var d record.Dump
	ix := record.NewIndexes()
	used := map[string]int64{}
	rev, err := readAll(ctx, cli, string(l), 0, dumpPageTimeout, func(kv *mvccpb.KeyValue) error {
		rest := strings.TrimPrefix(string(kv.Key), string(l))
		dir, _, _ := strings.Cut(rest, "/")
		rest = strings.TrimPrefix(rest, dir+"/")
		var err error
		switch dir + "/" {
		case watchedDir:
			err = readWatched(&d, rest, kv.Value)
		case ledgerDir:
			var r *storagev1.LedgerRecord
			if r, err = record.Decode[storagev1.LedgerRecord](kv.Value); err == nil {
				d.Ledger = append(d.Ledger, r)
			}
		case usedDir:
			used[rest] = decodeTime(kv.Value)
		case hashDir:
			var h authz.KeyHash
			if n, herr := hex.Decode(h[:], []byte(rest)); herr != nil || n != len(h) {
				return fmt.Errorf("%s: not a hash", kv.Key)
			}
			ix.Hashes[h] = string(kv.Value)
		case accountKeyDir:
			account, key, _ := strings.Cut(rest, "/")
			ix.AccountKeys[record.AccountKey{AccountID: account, KeyID: key}] = true
		case idempotencyDir:
			account, key, _ := strings.Cut(rest, "/")
			seq, _ := strconv.ParseUint(string(kv.Value), 10, 64) // a bad value names entry 0, which Verify reports
			ix.Idempotency[record.IdempotencyKey{AccountID: account, Key: key}] = seq
		}
		if err != nil {
			return fmt.Errorf("%s: %w", kv.Key, err)
		}
		return nil
	})
	if err != nil {
		return record.Dump{}, record.Indexes{}, err
	}
	for _, k := range d.Keys {
		k.LastUsedTime = max(k.LastUsedTime, used[k.Id])
	}
	d.Revision = rev
	return d, ix, nil
}

// readWatched adds to d the watched record at rest (under watchedDir).
func readWatched(d *record.Dump, rest string, v []byte) error {
	switch {
	case strings.HasPrefix(rest, "a/"):
		r, err := record.Decode[storagev1.AccountRecord](v)
		if err == nil {
			d.Accounts = append(d.Accounts, r)
		}
		return err
	case strings.HasPrefix(rest, "k/"):
		r, err := record.Decode[storagev1.KeyRecord](v)
		if err == nil {
			d.Keys = append(d.Keys, r)
		}
		return err
	}
	return nil
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
