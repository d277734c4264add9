package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/etcd"
	"github.com/keygate/keygate/store/etcd/etcdtest"
	"github.com/keygate/keygate/store/storetest"
)

// contents reads everything s holds through the authz.Store API.
func contents(t *testing.T, s authz.Store) (as []authz.Account, ks []authz.Key, es []authz.LedgerEntry) {
	t.Helper()
	ctx := t.Context()
	as, _, err := s.Accounts(ctx, authz.Page{Size: authz.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		k, _, err := s.Keys(ctx, a.ID, authz.Page{Size: authz.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		e, _, err := s.Ledger(ctx, a.ID, authz.Page{Size: authz.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		ks, es = append(ks, k...), append(es, e...)
	}
	return as, ks, es
}

func sameContents(t *testing.T, what string, got, want authz.Store) {
	t.Helper()
	ga, gk, ge := contents(t, got)
	wa, wk, we := contents(t, want)
	same := func(n int, eq func(i int) bool) bool {
		for i := range n {
			if !eq(i) {
				return false
			}
		}
		return true
	}
	if len(ga) != len(wa) || !same(len(ga), func(i int) bool {
		return ga[i].ID == wa[i].ID && ga[i].Balance == wa[i].Balance && ga[i].Status == wa[i].Status && ga[i].UpdateTime.Equal(wa[i].UpdateTime)
	}) {
		t.Errorf("%s: accounts differ:\n got %+v\nwant %+v", what, ga, wa)
	}
	if len(gk) != len(wk) || !same(len(gk), func(i int) bool {
		g, w := gk[i], wk[i]
		return g.ID == w.ID && g.Hash == w.Hash && g.Hint == w.Hint && g.ReplacedBy == w.ReplacedBy &&
			g.RevokeTime.Equal(w.RevokeTime) && g.ExpireTime.Equal(w.ExpireTime) && g.LastUsedTime.Equal(w.LastUsedTime)
	}) {
		t.Errorf("%s: keys differ:\n got %+v\nwant %+v", what, gk, wk)
	}
	if len(ge) != len(we) || !same(len(ge), func(i int) bool {
		g, w := ge[i], we[i]
		g.CreateTime, w.CreateTime = time.Time{}, time.Time{}
		return g == w
	}) {
		t.Errorf("%s: ledgers differ:\n got %+v\nwant %+v", what, ge, we)
	}
}

// TestMigrate copies a bbolt database into etcd and back with "keygate
// migrate", and finds the same accounts, keys and ledgers each time; keys
// keep working, idempotency keys keep guarding, and a second copy into the
// same prefix is refused.
func TestMigrate(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	src := filepath.Join(dir, "src.db")
	b, err := bolt.Open(src, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	a, err := b.CreateAccount(ctx, "acme", 100)
	must(err)
	other, err := b.CreateAccount(ctx, "globex", 0)
	must(err)
	_, err = b.SetAccountStatus(ctx, other.ID, authz.AccountDisabled)
	must(err)
	k1, err := b.CreateKey(ctx, storetest.NewKey(a.ID))
	must(err)
	revoked, err := b.CreateKey(ctx, storetest.NewKey(other.ID))
	must(err)
	_, err = b.RevokeKey(ctx, revoked.ID)
	must(err)
	_, _, err = b.RotateKey(ctx, k1.ID, time.Hour, storetest.NewKey(""))
	must(err)
	b.MarkUsed(k1.Hash, time.Now())
	topUp := authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 5, IdempotencyKey: "top-up 1"}
	_, err = b.ChangeBalance(ctx, topUp)
	must(err)
	_, err = b.ChangeBalance(ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerDebit, Amount: 3, KeyID: k1.ID})
	must(err)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	c := etcdtest.Start(t, 1)
	eps := strings.Join(c.Endpoints(), ",")
	migrate := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		args = append([]string{"migrate", "--etcd-endpoints", eps, "--etcd-prefix", "/migrated/"}, args...)
		if code := run(ctx, args, &out, &errOut); code != 0 {
			return out.String(), errors.New(errOut.String())
		}
		return out.String(), nil
	}
	out, err := migrate("--db", src)
	if err != nil {
		t.Fatalf("migrate to etcd: %v", err)
	}
	t.Log(strings.TrimSpace(out))
	if _, err := migrate("--db", src); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second migration into the same prefix: %v, want a refusal", err)
	}

	b, err = bolt.Open(src, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cli, err := clientv3.New(etcdtest.ClientConfig(c.Endpoints()))
	if err != nil {
		t.Fatal(err)
	}
	e, err := etcd.Open(ctx, cli, "/migrated/", etcd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	sameContents(t, "etcd copy", e, b)
	if cred, found, err := e.LookupKey(ctx, k1.Hash); err != nil || !found || cred.Balance != 102 || cred.ExpireTime.IsZero() {
		t.Errorf("the rotated key on etcd = %+v, %t, %v", cred, found, err)
	}
	if _, err := e.ChangeBalance(ctx, authz.BalanceChange{AccountID: a.ID, Kind: authz.LedgerCredit, Amount: 6, IdempotencyKey: "top-up 1"}); authz.Code(err) != authz.EConflict {
		t.Errorf("reusing a migrated idempotency key for another amount: %v, want EConflict", err)
	}

	back := filepath.Join(dir, "back.db")
	if _, err := migrate("--to", "bolt", "--db", back); err != nil {
		t.Fatalf("migrate back to bolt: %v", err)
	}
	if _, err := migrate("--to", "bolt", "--db", back); err == nil {
		t.Error("a migration onto an existing file was not refused")
	}
	b2, err := bolt.Open(back, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	sameContents(t, "bolt copy of the etcd copy", b2, b)
}
