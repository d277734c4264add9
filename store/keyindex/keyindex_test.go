package keyindex

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
	storagev1 "github.com/keygate/keygate/proto/keygate/storage/v1"
)

func hashOf(i int) authz.KeyHash { return sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))) }

func keyRecord(id, account string, h authz.KeyHash) *storagev1.KeyRecord {
	return &storagev1.KeyRecord{Id: id, AccountId: account, Hash: h[:]}
}

func apply(t testing.TB, x *Index, r *storagev1.KeyRecord, rev int64) {
	t.Helper()
	if err := x.ApplyKey(r, rev); err != nil {
		t.Fatal(err)
	}
}

// found returns the id of the key with hash h, or "".
func found(x *Index, h authz.KeyHash) string {
	c, ok := x.Lookup(h)
	if !ok {
		return ""
	}
	return c.KeyID
}

// TestCollisions fills an index with keys that share where their search
// starts and their slots' tags, and that differ only past them, so that
// only the full hash tells them apart, across the table's growth.
func TestCollisions(t *testing.T) {
	x := New()
	account := authz.NewAccountID(time.Now())
	hash := func(i int) authz.KeyHash {
		var h authz.KeyHash
		h[0] = byte(i % 3) // three starting points, all with the same tag
		h[30], h[31] = byte(i), byte(i>>8)
		return h
	}
	const n = 3000
	ids := make([]string, n)
	for i := range n {
		ids[i] = authz.NewKeyID(time.Now())
		apply(t, x, keyRecord(ids[i], account, hash(i)), 1)
	}
	for i := range n {
		if got := found(x, hash(i)); got != ids[i] {
			t.Fatalf("key %d: got %q, want %s", i, got, ids[i])
		}
	}
	if found(x, hash(n)) != "" {
		t.Error("found a key that was never added")
	}
	if accounts, keys := x.Len(); accounts != 1 || keys != n {
		t.Errorf("Len = %d accounts, %d keys; want 1, %d", accounts, keys, n)
	}
}

// TestRevisions applies records twice and out of order: only a newer
// revision changes what lookups see.
func TestRevisions(t *testing.T) {
	x, now := New(), time.Now()
	acct, id, h := authz.NewAccountID(now), authz.NewKeyID(now), hashOf(1)
	balance := func() int64 { c, _ := x.Lookup(h); return c.Balance }
	revoked := func() bool { c, _ := x.Lookup(h); return c.Revoked }

	// The key comes before its account: it reads an empty account.
	apply(t, x, keyRecord(id, acct, h), 10)
	if c, ok := x.Lookup(h); !ok || c.AccountID != acct || c.Balance != 0 {
		t.Fatalf("before its account: %+v, %v", c, ok)
	}
	for _, step := range []struct {
		rev  int64
		bal  int64
		want int64
	}{{5, 100, 100}, {7, 200, 200}, {6, 300, 200}, {7, 400, 200}, {8, 500, 500}} {
		if err := x.ApplyAccount(&storagev1.AccountRecord{Id: acct, Balance: step.bal}, step.rev); err != nil {
			t.Fatal(err)
		}
		if got := balance(); got != step.want {
			t.Errorf("balance %d at revision %d: got %d, want %d", step.bal, step.rev, got, step.want)
		}
	}
	rev := keyRecord(id, acct, h)
	rev.RevokeTime = now.UnixNano()
	apply(t, x, rev, 12)
	apply(t, x, keyRecord(id, acct, h), 11) // older: ignored
	apply(t, x, keyRecord(id, acct, h), 12) // the same revision again: ignored
	if !revoked() {
		t.Error("an older record un-revoked the key")
	}
	if _, keys := x.Len(); keys != 1 {
		t.Errorf("%d keys, want 1", keys)
	}
}

// TestRemove removes keys, and brings one back: removal is ordered by
// revision like any change.
func TestRemove(t *testing.T) {
	x, now := New(), time.Now()
	acct := authz.NewAccountID(now)
	a, b := authz.NewKeyID(now), authz.NewKeyID(now)
	apply(t, x, keyRecord(a, acct, hashOf(1)), 10)
	apply(t, x, keyRecord(b, acct, hashOf(2)), 10)

	x.Remove(map[string]int64{a: 9, b: 11}) // a's removal is older than its record
	if found(x, hashOf(1)) != a || found(x, hashOf(2)) != "" {
		t.Fatalf("after removal: a %q, b %q; want a alone", found(x, hashOf(1)), found(x, hashOf(2)))
	}
	if _, keys := x.Len(); keys != 1 {
		t.Errorf("%d keys, want 1", keys)
	}
	apply(t, x, keyRecord(b, acct, hashOf(2)), 10) // older than the removal: no resurrection
	if found(x, hashOf(2)) != "" {
		t.Error("an older record brought a removed key back")
	}
	x.MarkUsed(hashOf(2), now)
	if x.LastUsed(hashOf(2)) != 0 || len(x.TakeUsed()) != 0 {
		t.Error("a removed key was marked used")
	}
	apply(t, x, keyRecord(b, acct, hashOf(2)), 12) // created again
	if found(x, hashOf(2)) != b {
		t.Error("a key created again after its removal is not found")
	}

	// A new key with a removed key's hash takes its place.
	c := authz.NewKeyID(now)
	if err := x.ApplyKey(keyRecord(c, acct, hashOf(1)), 13); !errors.Is(err, ErrHashTaken) {
		t.Errorf("a second key with a live key's hash: %v, want ErrHashTaken", err)
	}
	x.Remove(map[string]int64{a: 14})
	apply(t, x, keyRecord(c, acct, hashOf(1)), 15)
	if found(x, hashOf(1)) != c {
		t.Errorf("after a's removal, hash 1 finds %q, want %s", found(x, hashOf(1)), c)
	}
	if _, keys := x.Len(); keys != 2 {
		t.Errorf("%d keys, want 2", keys)
	}
}

// TestSweep loads a snapshot that lacks a key: the key goes, unless a
// change after the snapshot brought it.
func TestSweep(t *testing.T) {
	x, now := New(), time.Now()
	acct := authz.NewAccountID(now)
	ids := []string{authz.NewKeyID(now), authz.NewKeyID(now), authz.NewKeyID(now)}
	for i, id := range ids {
		apply(t, x, keyRecord(id, acct, hashOf(i)), 10)
	}
	gen := x.StartSnapshot()
	apply(t, x, keyRecord(ids[0], acct, hashOf(0)), 10) // in the snapshot, taken at 20
	apply(t, x, keyRecord(ids[2], acct, hashOf(2)), 21) // not in it: written after it
	late := authz.NewKeyID(now)
	x.StartSnapshot() // a later snapshot has begun: ids[2] and late belong to it
	apply(t, x, keyRecord(late, acct, hashOf(3)), 25)
	x.Sweep(gen, 20)
	want := []string{ids[0], "", ids[2], late}
	for i, id := range want {
		if got := found(x, hashOf(i)); got != id {
			t.Errorf("key %d: got %q, want %q", i, got, id)
		}
	}
}

func TestMalformed(t *testing.T) {
	x, now := New(), time.Now()
	acct, id := authz.NewAccountID(now), authz.NewKeyID(now)
	h := hashOf(1)
	for _, r := range []*storagev1.KeyRecord{
		{Id: id, AccountId: acct, Hash: h[:31]},
		{Id: id + "x", AccountId: acct, Hash: h[:]},
		{Id: id, AccountId: "acct_1", Hash: h[:]},
	} {
		if err := x.ApplyKey(r, 1); err == nil {
			t.Errorf("ApplyKey(%v) accepted a malformed record", r)
		}
	}
	if err := x.ApplyAccount(&storagev1.AccountRecord{Id: "acct_1"}, 1); err == nil {
		t.Error("ApplyAccount accepted a malformed id")
	}
	if accounts, keys := x.Len(); accounts != 0 || keys != 0 {
		t.Errorf("Len = %d, %d after malformed records, want 0, 0", accounts, keys)
	}
}

func TestUsed(t *testing.T) {
	x, now := New(), time.Unix(1_700_000_000, 0)
	acct := authz.NewAccountID(now)
	ids := []string{authz.NewKeyID(now), authz.NewKeyID(now)}
	for i, id := range ids {
		apply(t, x, keyRecord(id, acct, hashOf(i)), 1)
	}
	x.MarkUsed(hashOf(0), now)
	x.MarkUsed(hashOf(0), now.Add(time.Millisecond)) // within a second: ignored
	x.MarkUsed(hashOf(5), now)                       // unknown
	us := x.TakeUsed()
	if len(us) != 1 || us[0].KeyID != ids[0] || us[0].Time != now.UnixNano() {
		t.Fatalf("TakeUsed = %+v, want key 0 at %d", us, now.UnixNano())
	}
	if us := x.TakeUsed(); len(us) != 0 {
		t.Errorf("a second TakeUsed = %+v, want none", us)
	}
	x.Requeue(us)
	x.MarkUsed(hashOf(0), now.Add(2*time.Second)) // queued already: once
	x.MarkUsed(hashOf(1), now)
	us = x.TakeUsed()
	if len(us) != 2 {
		t.Fatalf("after Requeue: %+v, want two uses", us)
	}
	for _, u := range us {
		if u.KeyID == ids[0] && u.Time != now.Add(2*time.Second).UnixNano() {
			t.Errorf("key 0 is taken at %d, want the newest use", u.Time)
		}
	}
	if got := x.LastUsed(hashOf(0)); got != now.Add(2*time.Second).UnixNano() {
		t.Errorf("LastUsed = %d", got)
	}
}

func TestHotPathAllocs(t *testing.T) {
	x, now, h := New(), time.Now(), hashOf(1)
	apply(t, x, keyRecord(authz.NewKeyID(now), authz.NewAccountID(now), h), 1)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok := x.Lookup(h); !ok {
			t.Fatal("not found")
		}
		x.MarkUsed(h, now)
		now = now.Add(2 * time.Second) // every call records a new time
	})
	if allocs != 0 {
		t.Errorf("Credential+MarkUsed: %v allocations, want 0", allocs)
	}
}

// TestConcurrent looks keys up while a writer adds many more (growing the
// table), revokes and removes others: keys added before the readers
// started are always found, with their own ids.
func TestConcurrent(t *testing.T) {
	x, now := New(), time.Now()
	acct := authz.NewAccountID(now)
	const stable, churn = 1000, 20_000
	ids := make([]string, stable+churn)
	for i := range ids {
		ids[i] = authz.NewKeyID(now)
	}
	for i := range stable {
		apply(t, x, keyRecord(ids[i], acct, hashOf(i)), 1)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				k := i % stable
				if got := found(x, hashOf(k)); got != ids[k] {
					t.Errorf("key %d: got %q, want %s", k, got, ids[k])
					return
				}
				x.MarkUsed(hashOf(stable+i%churn), now.Add(time.Duration(i)*time.Second))
			}
		})
	}
	removed := 0
	for i := stable; i < stable+churn; i++ {
		r := keyRecord(ids[i], acct, hashOf(i))
		apply(t, x, r, 1)
		r.RevokeTime = 1
		apply(t, x, r, 2)
		if i%100 == 0 && i > stable {
			x.Remove(map[string]int64{ids[i-1]: 3})
			x.TakeUsed()
			removed++
		}
	}
	stop.Store(true)
	wg.Wait()
	if _, keys := x.Len(); keys != stable+churn-removed {
		t.Errorf("%d keys, want %d", keys, stable+churn-removed)
	}
}
