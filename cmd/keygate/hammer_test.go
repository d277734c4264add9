package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// hammerKey is a key of TestHammer and what its writers have been told.
type hammerKey struct {
	id, secret string
	account    *hammerAccount
	revoked    atomic.Bool // a revoke or rotation was acknowledged
}

type hammerAccount struct {
	id      string
	blocked atomic.Bool // a disable, or a debit to zero, was acknowledged; nothing undoes it
}

// TestHammer runs keygate in-process (under -race in CI) and sends Checks
// from four connections while writers create, revoke and rotate keys,
// change balances and disable accounts over the admin API. No Check may
// allow a key whose revocation, or whose account's blocking, was
// acknowledged before the Check was sent.
func TestHammer(t *testing.T) {
	const token = "hammer-admin-token"
	m, err := Open(Config{
		DBPath:          filepath.Join(t.TempDir(), "keygate.db"),
		GRPCAddr:        "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		AdminToken:      token,
		FlushInterval:   10 * time.Millisecond,
		ShutdownTimeout: 10 * time.Second,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	c := admin.NewClient("http://"+m.AdminAddr(), token, &http.Client{Timeout: 10 * time.Second})

	var mu sync.Mutex
	var keys []*hammerKey
	newKey := func(a *hammerAccount) {
		resp, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: a.id, Name: "hammer"})
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		keys = append(keys, &hammerKey{id: resp.Key.Id, secret: resp.Secret, account: a})
		mu.Unlock()
	}
	// pick returns a random key, or nil.
	pick := func(r *rand.Rand) *hammerKey {
		mu.Lock()
		defer mu.Unlock()
		if len(keys) == 0 {
			return nil
		}
		return keys[r.IntN(len(keys))]
	}
	var accounts []*hammerAccount
	for i := range 6 {
		a, err := c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: fmt.Sprint("hammer ", i), Balance: 1000})
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, &hammerAccount{id: a.Id})
		for range 5 {
			newKey(accounts[i])
		}
	}

	const writes = 150
	var writers, checkers sync.WaitGroup
	r := func(i uint64) *rand.Rand { return rand.New(rand.NewPCG(i, 42)) }
	writers.Go(func() { // creates keys
		for i := range writes {
			newKey(accounts[i%len(accounts)])
		}
	})
	writers.Go(func() { // revokes keys
		rng := r(1)
		for range writes {
			if k := pick(rng); k != nil {
				if _, err := c.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: k.id}); err != nil {
					t.Error(err)
					return
				}
				k.revoked.Store(true)
			}
		}
	})
	writers.Go(func() { // rotates keys, without grace
		rng := r(2)
		for range writes {
			k := pick(rng)
			if k == nil || k.revoked.Load() {
				continue
			}
			resp, err := c.RotateKey(ctx, &adminv1.RotateKeyRequest{Key: k.id})
			var apiErr *admin.APIError
			if errors.As(err, &apiErr) && apiErr.HTTPStatus == http.StatusConflict {
				continue // revoked or rotated meanwhile
			}
			if err != nil {
				t.Error(err)
				return
			}
			k.revoked.Store(true)
			mu.Lock()
			keys = append(keys, &hammerKey{id: resp.Key.Id, secret: resp.Secret, account: k.account})
			mu.Unlock()
		}
	})
	writers.Go(func() { // changes balances of accounts 0 to 3, blocks 4 and 5
		rng := r(3)
		for i := range writes {
			a := accounts[rng.IntN(4)]
			var err error
			if rng.IntN(2) == 0 {
				_, err = c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: a.id, Amount: 1 + rng.Int64N(50)})
			} else {
				_, err = c.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: a.id, Amount: 1 + rng.Int64N(50)})
			}
			if err != nil {
				t.Error(err)
				return
			}
			switch i {
			case writes / 3:
				if _, err := c.DisableAccount(ctx, &adminv1.DisableAccountRequest{Account: accounts[4].id}); err != nil {
					t.Error(err)
					return
				}
				accounts[4].blocked.Store(true)
			case 2 * writes / 3:
				if _, err := c.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: accounts[5].id, Amount: 1000}); err != nil {
					t.Error(err)
					return
				}
				accounts[5].blocked.Store(true)
			}
		}
	})

	writing := make(chan struct{})
	var checks, allowed, violations atomic.Int64
	for i := range 4 {
		conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := authv3.NewAuthorizationClient(conn)
		rng := r(uint64(10 + i))
		checkers.Go(func() {
			for {
				select {
				case <-writing:
					return
				default:
				}
				k := pick(rng)
				revoked, blocked := k.revoked.Load(), k.account.blocked.Load()
				resp, err := client.Check(ctx, envoyRequest("Bearer "+k.secret))
				if err != nil {
					t.Error(err)
					return
				}
				checks.Add(1)
				if httpStatusOf(resp) != http.StatusOK {
					continue
				}
				allowed.Add(1)
				if revoked || blocked {
					violations.Add(1)
					t.Errorf("key %s allowed after its revocation (%v) or its account's blocking (%v) was acknowledged", k.id, revoked, blocked)
				}
			}
		})
	}
	writers.Wait()
	close(writing)
	checkers.Wait()
	t.Logf("%d checks, %d allowed, %d keys, %d violations", checks.Load(), allowed.Load(), len(keys), violations.Load())
}
