package etcd

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/etcd/etcdtest"
	"github.com/keygate/keygate/store/record"
	"github.com/keygate/keygate/store/storetest"
)

// seed writes accounts and keys into prefix with Restore, as keygate
// migrate does, and returns the keys' hashes.
func seed(b *testing.B, c *etcdtest.Cluster, prefix string, accounts, keys int) []authz.KeyHash {
	b.Helper()
	now := time.Now()
	var d record.Dump
	for range accounts {
		d.Accounts = append(d.Accounts, &storagev1.AccountRecord{Id: authz.NewAccountID(now), Name: "bench", Balance: 1000, CreateTime: now.UnixNano()})
	}
	hashes := make([]authz.KeyHash, keys)
	for i := range hashes {
		hashes[i] = sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
		nk := authz.NewKey{AccountID: d.Accounts[i%accounts].Id, Name: "bench", Hash: hashes[i], Hint: "sk-kg-...abcd"}
		r, err := record.NewKey(authz.NewKeyID(now), &nk, now)
		if err != nil {
			b.Fatal(err)
		}
		d.Keys = append(d.Keys, r)
	}
	start := time.Now()
	cli := c.Client(b)
	if err := Restore(b.Context(), cli, prefix, d); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	st, err := cli.Status(b.Context(), c.Endpoints()[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("Restore wrote %d accounts and %d keys in %s (%.0f keys/s); etcd's database holds %d bytes a key",
		accounts, keys, took.Round(time.Millisecond), float64(keys)/took.Seconds(), st.DbSizeInUse/int64(keys))
	return hashes
}

// BenchmarkLookupKey looks keys up in a replica's memory of a million
// keys, as the bolt store's benchmark of the same name does. A replica runs
// apart from etcd's servers: the embedded cluster is stopped while lookups
// are measured, so that its heap and goroutines do not share the process's
// garbage collector and caches with them (MaxStaleness keeps the replica
// answering), and started again for Close.
func BenchmarkLookupKey(b *testing.B) {
	const keys = 1_000_000
	c := etcdtest.Start(b, 1)
	hashes := seed(b, c, "/bench/", keys/10, keys)

	heap, start := storetest.HeapInUse(), time.Now()
	s := openTest(b, c, "/bench/", Options{FlushInterval: time.Hour, MaxStaleness: time.Hour})
	b.Logf("Open loaded %d keys in %s; memory takes %d bytes a key",
		s.Stats().Keys, time.Since(start).Round(time.Millisecond), (storetest.HeapInUse()-heap)/keys)

	c.StopAll()
	storetest.BenchmarkLookups(b, s, hashes)
	c.RestartAll()
}

// BenchmarkWrites measures admin writes through three replicas on a
// three-member cluster (all on this host, with fsync), with 8 writers a
// core spread over the replicas.
func BenchmarkWrites(b *testing.B) {
	c := etcdtest.Start(b, 3)
	var rs []*Store
	for range 3 {
		rs = append(rs, openTest(b, c, "/bench/", Options{}))
	}
	ctx := b.Context()
	shared, err := rs[0].CreateAccount(ctx, "shared", 0)
	if err != nil {
		b.Fatal(err)
	}
	// run runs op in parallel, each writer on its own replica and
	// account, and reports writes a second: op makes perOp of them.
	run := func(b *testing.B, perOp int, op func(s *Store, own authz.Account, n int) error) {
		var writers atomic.Int64
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			w := writers.Add(1)
			s := rs[w%int64(len(rs))]
			own, err := s.CreateAccount(ctx, "own", 0)
			if err != nil {
				b.Error(err)
				return
			}
			for n := 0; pb.Next(); n++ {
				if err := op(s, own, n); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "writes/s")
	}
	var seq atomic.Int64
	b.Run("debit-one-account", func(b *testing.B) {
		run(b, 1, func(s *Store, _ authz.Account, _ int) error {
			_, err := s.ChangeBalance(ctx, authz.BalanceChange{AccountID: shared.ID, Kind: authz.LedgerDebit, Amount: 1,
				IdempotencyKey: fmt.Sprint(seq.Add(1))})
			return err
		})
	})
	b.Run("debit-own-account", func(b *testing.B) {
		run(b, 1, func(s *Store, own authz.Account, _ int) error {
			_, err := s.ChangeBalance(ctx, authz.BalanceChange{AccountID: own.ID, Kind: authz.LedgerDebit, Amount: 1,
				IdempotencyKey: fmt.Sprint(seq.Add(1))})
			return err
		})
	})
	b.Run("create-key", func(b *testing.B) {
		run(b, 1, func(s *Store, own authz.Account, _ int) error {
			_, err := s.CreateKey(ctx, storetest.NewKey(own.ID))
			return err
		})
	})
	b.Run("create-and-revoke-key", func(b *testing.B) {
		run(b, 2, func(s *Store, own authz.Account, _ int) error {
			k, err := s.CreateKey(ctx, storetest.NewKey(own.ID))
			if err == nil {
				_, err = s.RevokeKey(ctx, k.ID)
			}
			return err
		})
	})
}
