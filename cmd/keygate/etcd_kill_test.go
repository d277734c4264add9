package main

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
	"github.com/keygate/keygate/store/etcd"
	"github.com/keygate/keygate/store/etcd/etcdtest"
)

// TestEtcdKillMidWrite kills (SIGKILL) a "keygate serve --store etcd"
// process while eight clients write through it: debits, key creations and
// rotations, each one etcd transaction of several records. What it left
// must check out (etcd.Verify: no key without its hash claim or listing,
// no ledger that does not sum to its balance), and every debit, retried
// with its idempotency key on another replica, is applied exactly once.
func TestEtcdKillMidWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	bin, err := keygateBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := etcdtest.Start(t, 1)
	adminAddr := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--store", "etcd", "--etcd-endpoints", strings.Join(c.Endpoints(), ","),
		"--grpc-addr", freeAddr(t), "--admin-addr", adminAddr)
	cmd.Env = append(cleanEnv(), "KEYGATE_ADMIN_TOKEN="+etcdAdminToken)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	waitUntil(t, "keygate serve ready", func() bool {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	ctx := t.Context()
	a := admin.NewClient("http://"+adminAddr, etcdAdminToken, &http.Client{Timeout: 10 * time.Second})
	const opening, accounts, writers = 1_000_000, 4, 8
	var ids []string
	for range accounts {
		acct, err := a.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "acme", Balance: opening})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, acct.Id)
	}

	var acked, ackedDebits atomic.Int64
	var mu sync.Mutex
	attempted := map[string]string{} // idempotency key -> account
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				var err error
				switch acct := ids[(w+i)%accounts]; i % 4 {
				case 3:
					var k *adminv1.CreateKeyResponse
					if k, err = a.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct, Name: "k"}); err == nil {
						_, err = a.RotateKey(ctx, &adminv1.RotateKeyRequest{Key: k.Key.Id})
					}
				default:
					ik := fmt.Sprintf("w%d-%d", w, i)
					mu.Lock()
					attempted[ik] = acct
					mu.Unlock()
					if _, err = a.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: acct, Amount: 1, IdempotencyKey: ik}); err == nil {
						ackedDebits.Add(1)
					}
				}
				if err != nil {
					return // the process is gone
				}
				acked.Add(1)
			}
		})
	}
	waitUntil(t, "writes acknowledged", func() bool { return acked.Load() >= 200 })
	cmd.Process.Kill()
	<-exited
	wg.Wait()
	t.Logf("killed keygate after %d acknowledged writes; %d debits were sent and not acknowledged", acked.Load(), int64(len(attempted))-ackedDebits.Load())

	cli := c.Client(t)
	if err := etcd.Verify(ctx, cli, "/keygate/"); err != nil {
		t.Errorf("after the kill: %v", err)
	}
	b := startReplica(t, etcdConfig(c, 30*time.Second))
	want := map[string]int64{}
	for ik, acct := range attempted {
		if _, err := b.admin.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: acct, Amount: 1, IdempotencyKey: ik}); err != nil {
			t.Fatal(err)
		}
		want[acct]++
	}
	for _, id := range ids {
		got, err := b.admin.GetAccount(ctx, &adminv1.GetAccountRequest{Account: id})
		if err != nil || got.Balance != opening-want[id] {
			t.Errorf("account %s: %v, %v; want balance %d (each of %d debits once)", id, got, err, opening-want[id], want[id])
		}
	}
	if err := etcd.Verify(context.Background(), cli, "/keygate/"); err != nil {
		t.Errorf("after the retries: %v", err)
	}
}
