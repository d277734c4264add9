package bolt

import (
	"crypto/sha256"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/record"
)

type (
	ImportAccount = record.ImportAccount
	ImportKey     = record.ImportKey
)

func importKey(n int) ImportKey {
	return ImportKey{Name: "imported", Hash: sha256.Sum256([]byte{byte(n), byte(n >> 8)}), Hint: "sk-...abcd"}
}

func TestImport(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s := openTest(t, path, Options{})
	existing := mkKey(t, s, mkAccount(t, s, 5).ID)

	d, err := record.NewImport([]ImportAccount{
		{Name: "one", Balance: 100, Keys: []ImportKey{importKey(1), importKey(2)}},
		{Name: "two", Disabled: true, Keys: []ImportKey{importKey(3)}},
		{Name: "none"},
	}, time.Now())
	noErr(t, err)
	noErr(t, s.Import(t.Context(), d))
	ids := []string{d.Accounts[0].Id, d.Accounts[1].Id, d.Accounts[2].Id}
	if got, want := s.Stats(), (Stats{Accounts: 4, Keys: 4}); got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
	for _, c := range []struct {
		key      int
		account  string
		balance  int64
		disabled bool
	}{{1, ids[0], 100, false}, {2, ids[0], 100, false}, {3, ids[1], 0, true}} {
		cred, found, err := s.LookupKey(t.Context(), importKey(c.key).Hash)
		if !found || err != nil || cred.AccountID != c.account || cred.Balance != c.balance || cred.AccountDisabled != c.disabled {
			t.Errorf("LookupKey(key %d) = %+v, %t, %v", c.key, cred, found, err)
		}
	}
	ledger, _, err := s.Ledger(t.Context(), ids[0], authz.Page{})
	noErr(t, err)
	if len(ledger) != 1 || ledger[0].Kind != authz.LedgerOpen || ledger[0].Amount != 100 {
		t.Errorf("ledger of an imported account = %+v, want one opening entry of 100", ledger)
	}

	// A reopened store holds the same: the import is on disk.
	before := snapshot(t, s)
	noErr(t, s.Close())
	s2 := openTest(t, path, Options{})
	if after := snapshot(t, s2); !reflect.DeepEqual(before, after) {
		t.Errorf("after reopen:\n got %+v\nwant %+v", after, before)
	}

	// Every bad account is reported by position, and nothing is imported:
	// record.NewImport finds those that are bad in themselves, the store
	// those whose keys' hashes are stored.
	_, err = record.NewImport([]ImportAccount{
		{Name: "good", Keys: []ImportKey{importKey(10)}},
		{Name: "", Keys: []ImportKey{importKey(11)}},
		{Name: "negative", Balance: -1},
		{Name: "twice", Keys: []ImportKey{importKey(10)}},
		{Name: "past", Keys: []ImportKey{{Name: "x", Hash: importKey(12).Hash, Hint: "h", ExpireTime: time.Unix(1, 0)}}},
		{Name: "no hint", Keys: []ImportKey{{Name: "x", Hash: importKey(13).Hash}}},
	}, time.Now())
	checkBadAccounts(t, err, []int{1, 2, 3, 4, 5})
	d, err = record.NewImport([]ImportAccount{
		{Name: "good", Keys: []ImportKey{importKey(10)}},
		{Name: "stored hash", Keys: []ImportKey{{Name: "x", Hash: existing.Hash, Hint: "h"}}},
		{Name: "imported hash", Keys: []ImportKey{importKey(1)}},
	}, time.Now())
	noErr(t, err)
	checkBadAccounts(t, s2.Import(t.Context(), d), []int{1, 2})
	if got := s2.Stats(); got != before.Stats {
		t.Errorf("a refused import changed the store: Stats = %+v, want %+v", got, before.Stats)
	}
	if _, found, _ := s2.LookupKey(t.Context(), importKey(10).Hash); found {
		t.Error("a refused import added a key")
	}
}

// checkBadAccounts checks that err is an *record.ImportError that lists
// the accounts at want.
func checkBadAccounts(t *testing.T, err error, want []int) {
	t.Helper()
	var ie *record.ImportError
	if !errors.As(err, &ie) {
		t.Fatalf("Import of bad accounts: %v, want an *ImportError", err)
	}
	var bad []int
	for _, a := range ie.Accounts {
		bad = append(bad, a.Index)
	}
	if !reflect.DeepEqual(bad, want) {
		t.Errorf("bad accounts %v, want %v (%v)", bad, want, err)
	}
}

// BenchmarkImport imports 100,000 keys, ten per account, into an empty store.
func BenchmarkImport(b *testing.B) {
	const keys = 100_000
	accounts := make([]ImportAccount, keys/10)
	for i := range accounts {
		accounts[i] = ImportAccount{Name: "bench", Balance: 1000, Keys: make([]ImportKey, 10)}
		for j := range accounts[i].Keys {
			n := uint64(i*10 + j)
			accounts[i].Keys[j] = ImportKey{Name: "bench", Hash: sha256.Sum256([]byte{byte(n), byte(n >> 8), byte(n >> 16)}), Hint: "sk-...abcd"}
		}
	}
	for b.Loop() {
		b.StopTimer()
		s := openTest(b, filepath.Join(b.TempDir(), "keygate.db"), Options{})
		b.StartTimer()
		d, err := record.NewImport(accounts, time.Now())
		if err == nil {
			err = s.Import(b.Context(), d)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(keys*b.N)/b.Elapsed().Seconds(), "keys/s")
}
