package bolt

import (
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/storetest"
)

// writers is the number of concurrent admin clients BenchmarkWrites models.
const writers = 32

// BenchmarkWrites measures durable writes from 32 concurrent writers: key
// creations, and debits spread over 100 accounts. Every write returns only
// once it is committed with an fsync.
func BenchmarkWrites(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "keygate.db"), Options{FlushInterval: time.Hour})
	accounts := make([]authz.Account, 100)
	for i := range accounts {
		a, err := s.CreateAccount(b.Context(), "bench", 1<<40)
		if err != nil {
			b.Fatal(err)
		}
		accounts[i] = a
	}
	for _, c := range []struct {
		name  string
		write func(i int64) error
	}{
		{"create key", func(i int64) error {
			_, err := s.CreateKey(b.Context(), storetest.NewKey(accounts[i%int64(len(accounts))].ID))
			return err
		}},
		{"debit", func(i int64) error {
			_, err := s.ChangeBalance(b.Context(), authz.BalanceChange{AccountID: accounts[i%int64(len(accounts))].ID, Kind: authz.LedgerDebit, Amount: 1})
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism((writers + 1) / 2)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := c.write(n.Add(1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// TestConcurrentWrites runs 32 writers whose writes share commits: every
// write is seen by LookupKey as soon as it returns, the balances add up,
// and a reopened store holds the same.
func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s := openTest(t, path, Options{FlushInterval: time.Hour})
	accounts := []authz.Account{mkAccount(t, s, 1000), mkAccount(t, s, 1000)}
	const perWriter = 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			a := accounts[w%len(accounts)]
			for range perWriter {
				nk := storetest.NewKey(a.ID)
				if _, err := s.CreateKey(t.Context(), nk); err != nil {
					t.Error(err)
					return
				}
				if c, found, _ := s.LookupKey(t.Context(), nk.Hash); !found || c.AccountID != a.ID {
					t.Errorf("a created key is not found at once: %+v, %t", c, found)
				}
				if _, err := s.ChangeBalance(t.Context(), authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 1}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, a := range accounts {
		got, err := s.Account(t.Context(), a.ID)
		noErr(t, err)
		if want := int64(1000 - writers/len(accounts)*perWriter); got.Balance != want {
			t.Errorf("balance %d, want %d", got.Balance, want)
		}
		k := mkKey(t, s, a.ID)
		c, _, _ := s.LookupKey(t.Context(), k.Hash)
		if c.Balance != got.Balance {
			t.Errorf("the index holds balance %d, the store %d", c.Balance, got.Balance)
		}
	}
	if got := s.Stats().Keys; got != writers*perWriter+len(accounts) {
		t.Errorf("%d keys, want %d", got, writers*perWriter+len(accounts))
	}
	before := snapshot(t, s)
	noErr(t, s.Close())
	s2 := openTest(t, path, Options{})
	if after := snapshot(t, s2); !reflect.DeepEqual(before, after) {
		t.Error("a reopened store differs")
	}
}

// TestConcurrentSameHash creates one key from 32 writers at once, in shared
// commits: exactly one succeeds.
func TestConcurrentSameHash(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{})
	a := mkAccount(t, s, 10)
	nk := storetest.NewKey(a.ID)
	var created, conflicts atomic.Int32
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			_, err := s.CreateKey(t.Context(), nk)
			switch authz.Code(err) {
			case "":
				created.Add(1)
			case authz.EConflict:
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 || conflicts.Load() != writers-1 {
		t.Errorf("%d created, %d conflicts; want 1 and %d", created.Load(), conflicts.Load(), writers-1)
	}
	if s.Stats().Keys != 1 {
		t.Errorf("%d keys stored", s.Stats().Keys)
	}
}

// TestBatchWithFailingWrite mixes writes that fail inside their transaction
// (debits attributed to a key of another account) with good ones: bbolt
// runs the good ones again without the failing one, and each gets its own
// answer.
func TestBatchWithFailingWrite(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{BatchDelay: 20 * time.Millisecond})
	a, b := mkAccount(t, s, 1000), mkAccount(t, s, 1000)
	other := mkKey(t, s, b.ID)
	var wg sync.WaitGroup
	var good atomic.Int32
	for i := range writers {
		wg.Go(func() {
			c := authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 1}
			if i%4 == 0 {
				c.KeyID = other.ID
			}
			_, err := s.ChangeBalance(t.Context(), c)
			switch {
			case i%4 == 0 && authz.Code(err) != authz.EInvalid:
				t.Errorf("debit attributed to another account's key: %v, want invalid", err)
			case i%4 != 0 && err != nil:
				t.Error(err)
			case err == nil:
				good.Add(1)
			}
		})
	}
	wg.Wait()
	got, err := s.Account(t.Context(), a.ID)
	noErr(t, err)
	if want := 1000 - int64(good.Load()); got.Balance != want || good.Load() != writers*3/4 {
		t.Errorf("balance %d after %d good debits", got.Balance, good.Load())
	}
}

// TestCreateKeysBesideFailingWrites creates keys while another writer keeps
// failing in the same batches. bbolt then rolls a batch back and runs its
// functions again; no creation may take its own earlier run's write for
// another key's and fail with a conflict.
func TestCreateKeysBesideFailingWrites(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{FlushInterval: time.Hour})
	ctx := t.Context()
	acct, err := s.CreateAccount(ctx, "acme", 1)
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := s.CreateKey(ctx, storetest.NewKey(acct.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	failing := make(chan struct{})
	go func() {
		defer close(failing)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := s.RotateKey(ctx, revoked.ID, 0, storetest.NewKey(acct.ID)); authz.Code(err) != authz.EConflict {
				t.Errorf("rotating a revoked key: %v, want a conflict", err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 150 {
				if _, err := s.CreateKey(ctx, storetest.NewKey(acct.ID)); err != nil {
					t.Errorf("CreateKey: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-failing
	if got := s.Stats().Keys; got != 1+8*150 {
		t.Fatalf("store holds %d keys, want %d", got, 1+8*150)
	}
}
