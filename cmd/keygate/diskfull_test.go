package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory and
// unmounts it when the test ends. Without the right to mount it skips the
// test, except in CI, which runs as root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount a %s tmpfs on %s: %v", size, dir, err)
		}
		t.Skipf("mounting a tmpfs needs root (CI runs as root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// TestDiskFull puts the database on a small tmpfs and fills it. Admin
// writes then fail with a 503 JSON error that says so, leave nothing
// behind, and Checks keep answering from what was committed; once space is
// freed, writes work again without a restart, and a restart finds every
// acknowledged write.
func TestDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	dir := mountTmpfs(t, "8m")
	db := filepath.Join(dir, "keygate.db")
	s := startServer(t, db)
	c := s.adminClient(t)
	ctx := context.Background()
	acct, err := c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "full", Balance: 1000})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "full"})
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	// Write until the disk refuses: writes that fit in pages the file
	// already has may still succeed.
	var acked []*adminv1.LedgerEntry
	var failed []string // idempotency keys of refused credits
	for i := 0; len(failed) < 5; i++ {
		if i == 10_000 {
			t.Fatal("the disk never filled up")
		}
		idem := fmt.Sprint("full-", i)
		e, err := c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 1, IdempotencyKey: idem})
		if err == nil {
			acked = append(acked, e)
			continue
		}
		var apiErr *admin.APIError
		if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusServiceUnavailable || apiErr.Code != "unavailable" ||
			!strings.Contains(apiErr.Message, "disk is full") {
			t.Fatalf("credit on a full disk: %v; want a 503 saying the disk is full", err)
		}
		failed = append(failed, idem)
	}
	// Other writes either fit in the file's free pages or are refused.
	keys := 1
	for range 5 {
		_, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "more"})
		var apiErr *admin.APIError
		switch {
		case err == nil:
			keys++
		case !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusServiceUnavailable:
			t.Errorf("create a key on a full disk: %v; want success or a 503", err)
		}
	}
	if got := s.check("Bearer " + key.Secret); got != http.StatusOK {
		t.Errorf("Check on a full disk: HTTP %d, want 200", got)
	}
	if got := s.check("Bearer " + key.Secret[:len(key.Secret)-1]); got != http.StatusUnauthorized {
		t.Errorf("Check of a truncated key on a full disk: HTTP %d, want 401", got)
	}
	assertState(t, c, acct.Id, 1000+int64(len(acked)), keys, failed)

	// Free space: the refused writes go through now, with no restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for _, idem := range failed {
		e, err := c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 1, IdempotencyKey: idem})
		if err != nil {
			t.Fatalf("credit after freeing space: %v", err)
		}
		acked = append(acked, e)
	}
	if _, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "more"}); err != nil {
		t.Fatalf("create a key after freeing space: %v", err)
	}
	keys++
	s.stop()
	checkBoltFile(t, db)
	// Logged by the admin API, in serve's own log format.
	if !strings.Contains(s.stderr.String(), `level=WARN msg="admin: the store is unavailable"`) || !strings.Contains(s.stderr.String(), "disk is full") {
		t.Errorf("the server did not log the full disk in its log format:\n%s", s.stderr)
	}

	s = startServer(t, db)
	assertState(t, s.adminClient(t), acct.Id, 1000+int64(len(acked)), keys, nil)
	s.stop()
	t.Logf("%d credits acknowledged around a full disk, %d refused with 503 and retried after freeing space, 0 lost", len(acked), len(failed))
}

// assertState checks an account's balance, that its ledger sums to it and
// holds none of the absent idempotency keys, and its number of keys.
func assertState(t *testing.T, c *admin.Client, account string, balance int64, keys int, absent []string) {
	t.Helper()
	ctx := context.Background()
	a, err := c.GetAccount(ctx, &adminv1.GetAccountRequest{Account: account})
	if err != nil {
		t.Fatal(err)
	}
	entries := listAll(t, func(token string) ([]*adminv1.LedgerEntry, string, error) {
		r, err := c.ListLedger(ctx, &adminv1.ListLedgerRequest{Account: account, PageSize: 1000, PageToken: token})
		return r.GetEntries(), r.GetNextPageToken(), err
	})
	var sum int64
	for _, e := range entries {
		sum += e.Amount
		for _, idem := range absent {
			if e.IdempotencyKey == idem {
				t.Errorf("refused credit %s is in the ledger", idem)
			}
		}
	}
	if a.Balance != balance || sum != balance {
		t.Errorf("balance %d, ledger sums to %d; want %d", a.Balance, sum, balance)
	}
	ks, err := c.ListKeys(ctx, &adminv1.ListKeysRequest{Account: account})
	if err != nil {
		t.Fatal(err)
	}
	if len(ks.Keys) != keys {
		t.Errorf("%d keys, want %d", len(ks.Keys), keys)
	}
}
