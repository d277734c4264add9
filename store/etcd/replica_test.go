package etcd

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/etcd/etcdtest"
	"github.com/keygate/keygate/store/storetest"
)

// waitLimit bounds every wait for a change to reach a replica. It is a
// failure bound, not a measurement: delays are measured and logged.
const waitLimit = 10 * time.Second

// replicas opens n stores on one prefix of c, each on its own client.
func replicas(t *testing.T, c *etcdtest.Cluster, n int, opts Options) []*Store {
	t.Helper()
	var ss []*Store
	for range n {
		ss = append(ss, openTest(t, c, "/keygate/", opts))
	}
	return ss
}

// waitFor polls cond until it holds, failing the test after waitLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, waitLimit)
		}
		time.Sleep(time.Millisecond)
	}
}

// decide runs a check of secret on s.
func decide(t *testing.T, s *Store, secret string) authz.Decision {
	t.Helper()
	d, err := authz.NewAuthorizer(s, nil).Authorize(t.Context(), authz.Request{Authorization: "Bearer " + secret})
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	return d
}

// newKey creates an account with balance and a key for it on s, and
// returns the key and its secret.
func newKey(t *testing.T, s *Store, balance int64) (authz.Key, string) {
	t.Helper()
	a, err := s.CreateAccount(t.Context(), "acme", balance)
	if err != nil {
		t.Fatal(err)
	}
	secret := authz.NewSecret()
	k, err := s.CreateKey(t.Context(), authz.NewKey{AccountID: a.ID, Name: "ci", Hash: authz.HashSecret(secret), Hint: authz.SecretHint(secret)})
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

// percentile returns the p-th percentile (0-100) of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

// TestReplicas runs three replicas on a three-member cluster: a key made on
// one works on the others, a revocation on one reaches the others (the
// delay is measured over many revocations while checks run), and debits
// spread over all of them add up exactly.
func TestReplicas(t *testing.T) {
	c := etcdtest.Start(t, 3)
	rs := replicas(t, c, 3, Options{})
	a, b := rs[0], rs[1]

	k, secret := newKey(t, a, 100)
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("key created on A allowed on replica %d", i), func() bool {
			_, found, _ := r.LookupKey(t.Context(), k.Hash)
			return found
		})
		if d := decide(t, r, secret); !d.Allowed() || d.KeyID != k.ID {
			t.Errorf("replica %d: %+v, want allowed", i, d)
		}
	}

	t.Run("Revocation", func(t *testing.T) {
		const revocations = 100
		ctx, stop := context.WithCancel(t.Context())
		var load sync.WaitGroup
		for _, r := range rs { // checks of a live key on every replica meanwhile
			load.Go(func() {
				for ctx.Err() == nil {
					if d := decide(t, r, secret); !d.Allowed() {
						t.Errorf("live key denied: %+v", d)
						return
					}
				}
			})
		}
		victims := make([]authz.Key, revocations)
		for i := range victims {
			var err error
			if victims[i], err = a.CreateKey(ctx, storetest.NewKey(k.AccountID)); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range rs {
			waitFor(t, "new keys everywhere", func() bool { return r.Stats().Keys == 1+revocations })
		}
		var delays []time.Duration
		for _, victim := range victims {
			if _, err := b.RevokeKey(ctx, victim.ID); err != nil {
				t.Fatal(err)
			}
			acked := time.Now()
			var slowest time.Duration
			for _, r := range []*Store{rs[0], rs[2]} {
				waitFor(t, "revocation on B denied elsewhere", func() bool {
					cred, _, _ := r.LookupKey(ctx, victim.Hash)
					return cred.Revoked
				})
				slowest = max(slowest, time.Since(acked))
			}
			delays = append(delays, slowest)
		}
		stop()
		load.Wait()
		slices.Sort(delays)
		t.Logf("revocation acknowledged on B, denied on A and C: p50 %s, p99 %s, max %s over %d revocations under load",
			percentile(delays, 50), percentile(delays, 99), delays[len(delays)-1], len(delays))
	})

	t.Run("Debits", func(t *testing.T) {
		const workers, perWorker, amount = 4, 20, 3
		acct, err := a.CreateAccount(t.Context(), "shared", 10_000)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i, r := range rs {
			for w := range workers {
				wg.Go(func() {
					for n := range perWorker {
						c := authz.BalanceChange{AccountID: acct.ID, Kind: authz.LedgerDebit, Amount: amount, IdempotencyKey: fmt.Sprintf("r%d-w%d-%d", i, w, n)}
						if _, err := r.ChangeBalance(t.Context(), c); err != nil {
							t.Error(err)
						}
					}
				})
			}
		}
		wg.Wait()
		n := len(rs) * workers * perWorker
		t.Logf("%d debits of one account from %d replicas: %.0f/s", n, len(rs), float64(n)/time.Since(start).Seconds())
		want := int64(10_000 - n*amount)
		for i, r := range rs {
			got, err := r.Account(t.Context(), acct.ID)
			if err != nil || got.Balance != want {
				t.Errorf("replica %d: balance %d, %v; want %d", i, got.Balance, err, want)
			}
		}
		entries := collectLedger(t, a, acct.ID)
		if len(entries) != n+1 {
			t.Errorf("ledger has %d entries, want %d", len(entries), n+1)
		}
	})
}

// collectLedger reads an account's whole ledger and checks that it adds
// up to the balance.
func collectLedger(t *testing.T, s *Store, id string) []authz.LedgerEntry {
	t.Helper()
	var all []authz.LedgerEntry
	var sum int64
	for p := (authz.Page{Size: authz.MaxPageSize}); ; {
		es, next, err := s.Ledger(t.Context(), id, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Kind == authz.LedgerDebit {
				sum -= e.Amount
			} else {
				sum += e.Amount
			}
			if e.Seq != uint64(len(all)+1) || e.BalanceAfter != sum {
				t.Errorf("entry %+v: want seq %d, balance after %d", e, len(all)+1, sum)
			}
			all = append(all, e)
		}
		if next == "" {
			break
		}
		p.Token = next
	}
	if a, err := s.Account(t.Context(), id); err != nil || a.Balance != sum {
		t.Errorf("account %s: balance %d, %v; ledger sums to %d", id, a.Balance, err, sum)
	}
	return all
}

// TestMemberDown stops one member of three: replicas go on reading and
// writing, and see each other's changes.
func TestMemberDown(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	rs := replicas(t, c, 2, Options{MaxStaleness: 2 * time.Second})
	k, secret := newKey(t, rs[0], 100)
	c.Stop(0)
	for i := range 5 {
		r := rs[i%2]
		if _, err := r.ChangeBalance(t.Context(), authz.BalanceChange{AccountID: k.AccountID, Kind: authz.LedgerDebit, Amount: 10}); err != nil {
			t.Fatalf("debit with a member down: %v", err)
		}
	}
	revoked, _ := newKey(t, rs[1], 1)
	if _, err := rs[1].RevokeKey(t.Context(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("replica %d sees the changes", i), func() bool {
			cred, _, err := r.LookupKey(t.Context(), revoked.Hash)
			debited, _, _ := r.LookupKey(t.Context(), k.Hash)
			return err == nil && cred.Revoked && debited.Balance == 50
		})
		if d := decide(t, r, secret); !d.Allowed() {
			t.Errorf("replica %d: %+v", i, d)
		}
	}
	// Many heartbeats (a tenth of MaxStaleness) have gone by: a replica
	// whose watch was on the stopped member has moved to another.
	for i, r := range rs {
		if err := r.Ready(); err != nil {
			t.Errorf("replica %d not ready with two members of three: %v", i, err)
		}
	}
	c.Restart(0)
}

// stayReady fails the test if a replica turns unready within d.
func stayReady(t *testing.T, rs []*Store, d time.Duration) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		for i, r := range rs {
			if err := r.Ready(); err != nil {
				t.Fatalf("replica %d on a cluster without writes: %v", i, err)
			}
		}
	}
}

// TestIdle: a replica stays fresh on a cluster that nobody writes to; etcd
// confirms its watch's progress all the same.
func TestIdle(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	const maxStaleness = 500 * time.Millisecond
	stayReady(t, replicas(t, c, 1, Options{MaxStaleness: maxStaleness}), 4*maxStaleness)
}

// TestClusterDown stops the whole cluster: checks go on from memory until
// MaxStaleness, then fail; writes fail with EUnavailable; once the cluster
// is back, replicas catch up by themselves and every acknowledged write is
// there.
func TestClusterDown(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	const maxStaleness = 2 * time.Second
	rs := replicas(t, c, 2, Options{MaxStaleness: maxStaleness, RequestTimeout: time.Second})
	a, b := rs[0], rs[1]
	k, secret := newKey(t, a, 100)
	if _, err := b.ChangeBalance(t.Context(), authz.BalanceChange{AccountID: k.AccountID, Kind: authz.LedgerCredit, Amount: 5, IdempotencyKey: "before"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		waitFor(t, "credit everywhere", func() bool { cred, _, _ := r.LookupKey(t.Context(), k.Hash); return cred.Balance == 105 })
	}

	c.StopAll()
	stopped := time.Now()
	for i, r := range rs {
		if d := decide(t, r, secret); !d.Allowed() {
			t.Errorf("replica %d right after the cluster stopped: %+v, want allowed from memory", i, d)
		}
	}
	_, err := a.ChangeBalance(t.Context(), authz.BalanceChange{AccountID: k.AccountID, Kind: authz.LedgerDebit, Amount: 1})
	if authz.Code(err) != authz.EUnavailable {
		t.Errorf("debit with the cluster down: %v, want EUnavailable", err)
	}
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("replica %d unavailable", i), func() bool {
			_, _, err := r.LookupKey(t.Context(), k.Hash)
			return authz.Code(err) == authz.EUnavailable
		})
		if r.Ready() == nil {
			t.Errorf("replica %d ready with the cluster down", i)
		}
		t.Logf("replica %d refused checks %s after the cluster stopped (max staleness %s), lag %s",
			i, time.Since(stopped).Round(time.Millisecond), maxStaleness, r.Stats().Lag.Round(time.Millisecond))
	}

	c.RestartAll()
	for i, r := range rs {
		waitFor(t, fmt.Sprintf("replica %d caught up", i), func() bool { return r.Ready() == nil })
		if d := decide(t, r, secret); !d.Allowed() {
			t.Errorf("replica %d after the restart: %+v", i, d)
		}
	}
	if got, err := b.Account(t.Context(), k.AccountID); err != nil || got.Balance != 105 {
		t.Errorf("account after the restart = %+v, %v; want the credit acknowledged before the outage", got, err)
	}
	stayReady(t, rs, 2*maxStaleness) // with no write since the restart
	if _, err := a.RevokeKey(t.Context(), k.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation after the restart reaches B", func() bool {
		cred, _, _ := b.LookupKey(t.Context(), k.Hash)
		return cred.Revoked
	})
}

// TestCompactedWhileDisconnected cuts one replica off (its only member
// stops), changes and compacts the history meanwhile, and checks that the
// replica loads a new snapshot when it is back: the revocation it missed,
// the key it missed and a record deleted by hand all reach it.
func TestCompactedWhileDisconnected(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 3)
	a := openTest(t, c, "/keygate/", Options{})
	cli, err := clientv3.New(etcdtest.ClientConfig(c.Endpoints()[2:]))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(t.Context(), cli, "/keygate/", Options{MaxStaleness: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	revoked, _ := newKey(t, a, 10)
	deleted, _ := newKey(t, a, 10)
	for _, h := range []authz.KeyHash{revoked.Hash, deleted.Hash} {
		waitFor(t, "keys on B", func() bool { _, found, _ := b.LookupKey(t.Context(), h); return found })
	}
	resyncs := b.Stats().Resyncs

	c.Stop(2)
	if _, err := a.RevokeKey(t.Context(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	missed, _ := newKey(t, a, 10)
	admin := c.Client(t)
	if _, err := admin.Txn(t.Context()).Then(deleteByHand(layout("/keygate/"), deleted)...).Commit(); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Get(t.Context(), "/keygate/schema")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(t.Context(), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	c.Restart(2)

	waitFor(t, "B resynchronised", func() bool {
		cred, _, err := b.LookupKey(t.Context(), revoked.Hash)
		_, foundMissed, _ := b.LookupKey(t.Context(), missed.Hash)
		_, foundDeleted, _ := b.LookupKey(t.Context(), deleted.Hash)
		return err == nil && cred.Revoked && foundMissed && !foundDeleted
	})
	if got := b.Stats().Resyncs; got != resyncs+1 {
		t.Errorf("resyncs = %d, want %d", got, resyncs+1)
	}
}

// deleteByHand is what an operator deletes to remove key k by hand: its
// record, the claim of its hash and its listing under its account.
func deleteByHand(l layout, k authz.Key) []clientv3.Op {
	return []clientv3.Op{clientv3.OpDelete(l.key(k.ID)), clientv3.OpDelete(l.hash(k.Hash)), clientv3.OpDelete(l.accountKeys(k.AccountID) + k.ID)}
}

// TestDeletedByHand deletes key records by hand, in one transaction, while
// a replica follows the watch: they stop authorizing at once, and a record
// put back authorizes again.
func TestDeletedByHand(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	rs := replicas(t, c, 2, Options{})
	a, b := rs[0], rs[1]
	kept, _ := newKey(t, a, 10)
	gone, _ := newKey(t, a, 10)
	back, _ := newKey(t, a, 10)
	for _, h := range []authz.KeyHash{kept.Hash, gone.Hash, back.Hash} {
		waitFor(t, "keys on B", func() bool { _, found, _ := b.LookupKey(t.Context(), h); return found })
	}
	admin := c.Client(t)
	l := layout("/keygate/")
	saved, err := admin.Get(t.Context(), l.key(back.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Txn(t.Context()).Then(append(deleteByHand(l, gone), clientv3.OpDelete(l.key(back.ID)))...).Commit(); err != nil {
		t.Fatal(err)
	}
	found := func(k authz.Key) bool { _, ok, _ := b.LookupKey(t.Context(), k.Hash); return ok }
	waitFor(t, "deleted keys gone from B", func() bool { return !found(gone) && !found(back) })
	if !found(kept) {
		t.Error("a key that was not deleted is gone")
	}
	if st := b.Stats(); st.Keys != 1 {
		t.Errorf("B holds %d keys, want 1", st.Keys)
	}
	if _, err := admin.Put(t.Context(), l.key(back.ID), string(saved.Kvs[0].Value)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a key put back on B", func() bool { return found(back) })
	if st := b.Stats(); st.Keys != 2 {
		t.Errorf("B holds %d keys, want 2", st.Keys)
	}
}

// TestRetriedOnAnotherReplica sends the same credit, with one idempotency
// key, to every replica at once: it is applied once.
func TestRetriedOnAnotherReplica(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	rs := replicas(t, c, 3, Options{})
	acct, err := rs[0].CreateAccount(t.Context(), "acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	change := authz.BalanceChange{AccountID: acct.ID, Kind: authz.LedgerCredit, Amount: 7, IdempotencyKey: "top-up"}
	entries := make([]authz.LedgerEntry, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			var err error
			if entries[i], err = r.ChangeBalance(t.Context(), change); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i, e := range entries {
		if e.Seq != 1 || e.BalanceAfter != 7 {
			t.Errorf("replica %d answered %+v, want the one entry", i, e)
		}
	}
	if l := collectLedger(t, rs[1], acct.ID); len(l) != 1 {
		t.Errorf("ledger has %d entries, want 1", len(l))
	}
}

// TestLastUsedAcrossReplicas: last-used times flushed by one replica are
// read by the others, and an older time flushed later never replaces a
// newer one.
func TestLastUsedAcrossReplicas(t *testing.T) {
	t.Parallel()
	c := etcdtest.Start(t, 1)
	rs := replicas(t, c, 2, Options{FlushInterval: time.Hour})
	a, b := rs[0], rs[1]
	k, _ := newKey(t, a, 1)
	waitFor(t, "key on B", func() bool { _, found, _ := b.LookupKey(t.Context(), k.Hash); return found })
	newer, older := storetest.Start.Add(time.Hour), storetest.Start
	a.MarkUsed(k.Hash, newer)
	b.MarkUsed(k.Hash, older)
	for _, r := range []*Store{a, b} { // the older time last
		if err := r.FlushLastUsed(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	fresh := openTest(t, c, "/keygate/", Options{})
	if got, err := fresh.Key(t.Context(), k.ID); err != nil || !got.LastUsedTime.Equal(newer) {
		t.Errorf("LastUsedTime on a new replica = %v, %v; want %v", got.LastUsedTime, err, newer)
	}
}
