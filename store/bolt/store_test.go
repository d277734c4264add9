package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
	"github.com/keygate/keygate/store/record"
	"github.com/keygate/keygate/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) storetest.Store {
		return openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{Now: now})
	})
}

// openTest opens a store that is checked (Verify), closed, and its file
// checked (bbolt's tx.Check) when tb ends.
func openTest(tb testing.TB, path string, opts Options) *Store {
	tb.Helper()
	s, err := Open(path, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Verify(context.Background()); err != nil && authz.Code(err) != authz.EUnavailable {
			tb.Errorf("Verify: %v", err)
		}
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
		checkFile(tb, path)
	})
	return s
}

// checkFile runs bbolt's consistency check on the closed database at path.
func checkFile(tb testing.TB, path string) {
	tb.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		tb.Fatalf("reopen for check: %v", err)
	}
	defer db.Close()
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			tb.Errorf("consistency check: %v", err)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// rawUpdate changes the closed database at path with bbolt directly.
func rawUpdate(t *testing.T, path string, fn func(tx *bbolt.Tx) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// storedKey reads a key record as it is on disk, without the index.
func storedKey(t *testing.T, s *Store, id string) *storagev1.KeyRecord {
	t.Helper()
	var r *storagev1.KeyRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		r, err = getKey(tx.Bucket(bucketKeys), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func noErr(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func mkAccount(t *testing.T, s *Store, balance int64) authz.Account {
	t.Helper()
	a, err := s.CreateAccount(t.Context(), "acme", balance)
	noErr(t, err)
	return a
}

func mkKey(t *testing.T, s *Store, accountID string) authz.Key {
	t.Helper()
	k, err := s.CreateKey(t.Context(), storetest.NewKey(accountID))
	noErr(t, err)
	return k
}

// state is everything a store shows, for comparing a store with itself
// after a reopen.
type state struct {
	Stats    Stats
	Accounts []authz.Account
	Keys     map[string][]authz.Key
	Ledgers  map[string][]authz.LedgerEntry
	Indexed  map[authz.KeyHash]authz.IndexedKey
}

func snapshot(t *testing.T, s *Store) state {
	t.Helper()
	ctx, all := t.Context(), authz.Page{Size: authz.MaxPageSize}
	st := state{
		Stats:   s.Stats(),
		Keys:    map[string][]authz.Key{},
		Ledgers: map[string][]authz.LedgerEntry{},
		Indexed: map[authz.KeyHash]authz.IndexedKey{},
	}
	var err error
	if st.Accounts, _, err = s.Accounts(ctx, all); err != nil {
		t.Fatal(err)
	}
	for _, a := range st.Accounts {
		if st.Keys[a.ID], _, err = s.Keys(ctx, a.ID, all); err != nil {
			t.Fatal(err)
		}
		if st.Ledgers[a.ID], _, err = s.Ledger(ctx, a.ID, all); err != nil {
			t.Fatal(err)
		}
		for _, k := range st.Keys[a.ID] {
			c, found, err := s.LookupKey(ctx, k.Hash)
			if !found || err != nil {
				t.Fatalf("LookupKey(%s) = %t, %v", k.ID, found, err)
			}
			st.Indexed[k.Hash] = c
		}
	}
	return st
}

func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "keygate.db")
	clock := storetest.NewClock(storetest.Start)
	s := openTest(t, path, Options{Now: clock.Now, FlushInterval: time.Hour})

	a, b := mkAccount(t, s, 100), mkAccount(t, s, 0)
	revoked, rotated := mkKey(t, s, a.ID), mkKey(t, s, a.ID)
	mkKey(t, s, b.ID)
	_, err := s.RevokeKey(ctx, revoked.ID)
	noErr(t, err)
	clock.Advance(time.Minute)
	_, created, err := s.RotateKey(ctx, rotated.ID, time.Hour, storetest.NewKey(""))
	noErr(t, err)
	topUp := authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 10, IdempotencyKey: "top-up"}
	first, err := s.ChangeBalance(ctx, topUp)
	noErr(t, err)
	_, err = s.ChangeBalance(ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 5, KeyID: created.ID})
	noErr(t, err)
	_, err = s.SetAccountStatus(ctx, b.ID, authz.AccountDisabled)
	noErr(t, err)
	used := clock.Now().Add(time.Second)
	s.MarkUsed(created.Hash, used)

	before := snapshot(t, s)
	if before.Stats != (Stats{Accounts: 2, Keys: 4}) {
		t.Errorf("Stats = %+v, want 2 accounts, 4 keys", before.Stats)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path, Options{Now: clock.Now})
	after := snapshot(t, s)
	if !reflect.DeepEqual(after, before) {
		t.Errorf("after reopening:\n got %+v\nwant %+v", after, before)
	}
	if got := storedKey(t, s, created.ID).LastUsedTime; got != used.UnixNano() {
		t.Errorf("stored LastUsedTime = %d, want %d (flushed by Close)", got, used.UnixNano())
	}
	if replay, err := s.ChangeBalance(ctx, topUp); err != nil || replay != first {
		t.Errorf("replay after reopening = %+v, %v; want %+v", replay, err, first)
	}
	topUp.Amount = 11
	if _, err := s.ChangeBalance(ctx, topUp); authz.Code(err) != authz.EConflict {
		t.Errorf("conflicting replay after reopening: %v, want conflict", err)
	}
	if got, err := s.Account(ctx, a.ID); err != nil || got.Balance != 105 {
		t.Errorf("Account = %+v, %v; want balance 105", got, err)
	}
}

func TestLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	s := openTest(t, path, Options{})
	start := time.Now()
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if want := "database " + path + " is in use by another keygate process"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("second Open took %s to fail", d)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openTest(t, path, Options{})
}

func TestRefusedFiles(t *testing.T) {
	create := func(t *testing.T, path string) {
		s, err := Open(path, Options{})
		noErr(t, err)
		noErr(t, s.Close())
	}
	version := func(v []byte) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			create(t, path)
			rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaVersion, v) })
		}
	}
	for _, c := range []struct {
		name    string
		prepare func(t *testing.T, path string)
		want    string
	}{
		{"text", func(t *testing.T, path string) {
			noErr(t, os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600))
		}, "is not a bbolt database or is corrupt"},
		{"foreign bbolt", func(t *testing.T, path string) {
			rawUpdate(t, path, func(tx *bbolt.Tx) error {
				b, err := tx.CreateBucket([]byte("widgets"))
				if err != nil {
					return err
				}
				return b.Put([]byte("w1"), []byte("blue"))
			})
		}, `not a keygate database: it has a bucket "widgets" but no "meta" bucket`},
		{"truncated", func(t *testing.T, path string) {
			create(t, path)
			noErr(t, os.Truncate(path, 12<<10))
		}, "is not a bbolt database or is corrupt"},
		{"newer schema", version(binary.BigEndian.AppendUint64(nil, 2)), "schema version 2 is newer than this keygate supports (1)"},
		{"bad schema version", version([]byte{1}), "corrupt: the schema version is 1 bytes long"},
		{"missing bucket", func(t *testing.T, path string) {
			create(t, path)
			rawUpdate(t, path, func(tx *bbolt.Tx) error { return tx.DeleteBucket(bucketLedger) })
		}, `corrupt: bucket "ledger" is missing`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keygate.db")
			c.prepare(t, path)
			before, err := os.ReadFile(path)
			noErr(t, err)
			_, err = Open(path, Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v; want an error naming the file and saying %q", err, c.want)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Error("the refused file was changed")
			}
		})
	}
}

func TestEmptyFileIsInitialized(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	noErr(t, os.WriteFile(path, nil, 0o600))
	s := openTest(t, path, Options{})
	if st := s.Stats(); st != (Stats{}) {
		t.Errorf("Stats = %+v", st)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("Stat = %v, %v; want mode 0600", fi.Mode(), err)
	}
}

func TestLastUsedFlush(t *testing.T) {
	ctx := t.Context()
	clock := storetest.NewClock(storetest.Start)
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{Now: clock.Now, FlushInterval: time.Hour})
	k := mkKey(t, s, mkAccount(t, s, 1).ID)

	used := clock.Now()
	s.MarkUsed(k.Hash, used)
	if got := storedKey(t, s, k.ID).LastUsedTime; got != 0 {
		t.Errorf("LastUsedTime stored before a flush: %d", got)
	}
	if err := s.FlushLastUsed(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := storedKey(t, s, k.ID).LastUsedTime; got != used.UnixNano() {
		t.Errorf("stored LastUsedTime = %d, want %d", got, used.UnixNano())
	}

	// Uses less than a second apart are not recorded.
	s.MarkUsed(k.Hash, used.Add(500*time.Millisecond))
	if got, err := s.Key(ctx, k.ID); err != nil || !got.LastUsedTime.Equal(used) {
		t.Errorf("Key = %+v, %v; want LastUsedTime %s", got, err, used)
	}

	// Revoking writes the unflushed time with the key.
	later := used.Add(time.Minute)
	s.MarkUsed(k.Hash, later)
	_, err := s.RevokeKey(ctx, k.ID)
	noErr(t, err)
	if got := storedKey(t, s, k.ID).LastUsedTime; got != later.UnixNano() {
		t.Errorf("stored LastUsedTime after revoking = %d, want %d", got, later.UnixNano())
	}
}

func TestBackgroundFlush(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{FlushInterval: 5 * time.Millisecond})
	k := mkKey(t, s, mkAccount(t, s, 1).ID)
	used := time.Now()
	s.MarkUsed(k.Hash, used)
	for deadline := time.Now().Add(5 * time.Second); storedKey(t, s, k.ID).LastUsedTime != used.UnixNano(); {
		if time.Now().After(deadline) {
			t.Fatal("the last-used time was not flushed in the background")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTimesOutOfRange(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{})
	a := mkAccount(t, s, 1)
	nk := storetest.NewKey(a.ID)
	nk.ExpireTime = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := s.CreateKey(ctx, nk); authz.Code(err) != authz.EInvalid {
		t.Errorf("CreateKey expiring in 3000: %v, want invalid", err)
	}
	k := mkKey(t, s, a.ID)
	if _, _, err := s.RotateKey(ctx, k.ID, 250*365*24*time.Hour, storetest.NewKey(a.ID)); authz.Code(err) != authz.EInvalid {
		t.Errorf("RotateKey with a 250-year grace: %v, want invalid", err)
	}
}

func TestPageSizeClamped(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{})
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for range authz.MaxPageSize + 1 {
			id := authz.NewAccountID(time.Now())
			if err := put(tx.Bucket(bucketAccounts), []byte(id), &storagev1.AccountRecord{Id: id, Name: "a"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	as, next, err := s.Accounts(t.Context(), authz.Page{Size: 5000})
	if err != nil || len(as) != authz.MaxPageSize || next == "" {
		t.Errorf("Accounts(5000) = %d accounts, next %q, %v; want %d and a next page", len(as), next, err, authz.MaxPageSize)
	}
}

func TestClosed(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{})
	k := mkKey(t, s, mkAccount(t, s, 1).ID)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LookupKey(ctx, k.Hash); authz.Code(err) != authz.EUnavailable {
		t.Errorf("LookupKey after Close: %v", err)
	}
	if _, err := s.CreateAccount(ctx, "b", 0); authz.Code(err) != authz.EUnavailable {
		t.Errorf("CreateAccount after Close: %v", err)
	}
	if _, err := s.Account(ctx, k.AccountID); authz.Code(err) != authz.EUnavailable {
		t.Errorf("Account after Close: %v", err)
	}
	s.MarkUsed(k.Hash, time.Now())
	if err := s.FlushLastUsed(t.Context()); authz.Code(err) != authz.EUnavailable {
		t.Errorf("FlushLastUsed after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.CreateAccount(ctx, "a", 1); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateAccount with a canceled context: %v", err)
	}
	if st := s.Stats(); st.Accounts != 0 {
		t.Errorf("Stats = %+v, want no account", st)
	}
}

func TestHotPathAllocs(t *testing.T) {
	storetest.HotPathAllocs(t, openTest(t, filepath.Join(t.TempDir(), "keygate.db"), Options{FlushInterval: time.Hour}))
}

func TestRestoreRefusesAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keygate.db")
	noErr(t, os.WriteFile(path, nil, 0o600))
	err := Restore(path, record.Dump{})
	if err == nil || !strings.HasSuffix(err.Error(), "the file exists") {
		t.Errorf("Restore into an existing file: %v", err)
	}
	err = Restore(filepath.Join(path, "under-a-file.db"), record.Dump{})
	if err == nil || strings.Contains(err.Error(), "<nil>") || !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Restore into a path that cannot be checked: %v", err)
	}
}

// TestVerifyFindsDisagreements breaks the records of a store behind its
// back, one way at a time, and Verify reports each.
func TestVerifyFindsDisagreements(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		breakIt    func(tx *bbolt.Tx, a authz.Account, k authz.Key) error
	}{
		{"balance off the ledger", "the ledger sums to", func(tx *bbolt.Tx, a authz.Account, _ authz.Key) error {
			r, err := getAccount(tx.Bucket(bucketAccounts), a.ID)
			if err != nil {
				return err
			}
			r.Balance++
			return put(tx.Bucket(bucketAccounts), []byte(a.ID), r)
		}},
		{"hash claimed by no key", "claimed by key", func(tx *bbolt.Tx, _ authz.Account, _ authz.Key) error {
			return tx.Bucket(bucketKeyHashes).Put(make([]byte, 32), []byte("key_nothing"))
		}},
		{"key not listed", "not listed under account", func(tx *bbolt.Tx, a authz.Account, k authz.Key) error {
			return tx.Bucket(bucketAccountKeys).Delete(accountKeyKey(a.ID, k.ID))
		}},
		{"idempotency key of no entry", "does not carry it", func(tx *bbolt.Tx, a authz.Account, _ authz.Key) error {
			return tx.Bucket(bucketIdempotency).Put(idempotencyKey(a.ID, "stray"), beUint64(7))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{})
			noErr(t, err)
			defer s.Close()
			a := mkAccount(t, s, 10)
			k := mkKey(t, s, a.ID)
			noErr(t, s.Verify(t.Context()))
			noErr(t, s.db.Update(func(tx *bbolt.Tx) error { return tc.breakIt(tx, a, k) }))
			if err := s.Verify(t.Context()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestFailedFlushIsLogged breaks the database under a running store: its
// background flush fails, and says so in the store's log.
func TestFailedFlushIsLogged(t *testing.T) {
	var logged syncBuffer
	s, err := Open(filepath.Join(t.TempDir(), "keygate.db"), Options{FlushInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	noErr(t, err)
	k := mkKey(t, s, mkAccount(t, s, 1).ID)
	noErr(t, s.db.Close())
	s.MarkUsed(k.Hash, time.Now())
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logged.String(), "cannot write last-used times"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed flush in the log:\n%s", logged.String())
		}
	}
	if err := s.Close(); err == nil {
		t.Error("Close after failed flushes: nil error")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
