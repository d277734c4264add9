package main

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// TestGracefulShutdownUnderLoad sends SIGTERM while 16 connections keep
// Checks in flight. Every Check the server took gets its answer: the only
// failures allowed are calls that never reached it, refused because the
// listener had closed. The last-used times recorded since the last flush
// (here: since startup, with an hour between flushes) are on disk after
// the exit.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	db := filepath.Join(t.TempDir(), "keygate.db")
	s := startServer(t, db, "--flush-interval", "1h")
	c := s.adminClient(t)
	ctx := context.Background()
	acct, err := c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "load", Balance: 100})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "load"})
	if err != nil {
		t.Fatal(err)
	}

	const callers = 16
	var answered, refused atomic.Int64
	var mu sync.Mutex
	var lost []error
	var warm sync.WaitGroup
	warm.Add(callers)
	var wg sync.WaitGroup
	for range callers {
		conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		client := authv3.NewAuthorizationClient(conn)
		wg.Go(func() {
			for n := 0; ; n++ {
				if n == 20 {
					warm.Done()
				}
				resp, err := client.Check(ctx, envoyRequest("Bearer "+key.Secret))
				switch {
				case err == nil && httpStatusOf(resp) == 200:
					answered.Add(1)
					continue
				case neverReached(err):
					refused.Add(1)
				default:
					mu.Lock()
					lost = append(lost, err)
					mu.Unlock()
				}
				if n < 20 {
					warm.Done()
				}
				return
			}
		})
	}
	warm.Wait() // every caller is under way
	s.cmd.Process.Signal(syscall.SIGTERM)
	wg.Wait()
	if <-s.done; s.exit != nil {
		t.Fatalf("keygate serve exited with %v after SIGTERM:\n%s", s.exit, s.stderr)
	}
	for _, err := range lost {
		t.Errorf("a Check in flight at SIGTERM got no answer: %v", err)
	}
	t.Logf("%d Checks answered, %d refused after the listener closed, %d lost", answered.Load(), refused.Load(), len(lost))

	s = startServer(t, db)
	got, err := s.adminClient(t).GetKey(ctx, &adminv1.GetKeyRequest{Key: key.Key.Id})
	if err != nil {
		t.Fatal(err)
	}
	if got.LastUsedTime == nil {
		t.Error("the key's last-used time was not flushed at shutdown")
	}
	s.stop()
}

// neverReached reports whether err says that a call was refused before the
// server took it: the connection could not be made, or the server refused
// the stream after announcing its shutdown.
func neverReached(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	msg := status.Convert(err).Message()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "REFUSED_STREAM")
}
