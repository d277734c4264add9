package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
	"github.com/keygate/keygate/store/etcd/etcdtest"
)

const etcdAdminToken = "etcd-test-admin-token"

// waitLimit bounds every wait for a change to reach a replica: a failure
// bound, not a measurement.
const waitLimit = 10 * time.Second

// replica is a keygate serve on etcd, run in-process.
type replica struct {
	m     *Main
	admin *admin.Client
	check authv3.AuthorizationClient
	conn  *grpc.ClientConn
}

// etcdConfig is the Config of a replica on cluster c.
func etcdConfig(c *etcdtest.Cluster, maxStaleness time.Duration) Config {
	return Config{
		Store:           storeEtcd,
		Etcd:            EtcdConfig{Endpoints: c.Endpoints(), Prefix: "/keygate/", DialTimeout: 5 * time.Second, RequestTimeout: time.Second, MaxStaleness: maxStaleness},
		GRPCAddr:        "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		AdminToken:      etcdAdminToken,
		FlushInterval:   100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
	}
}

// startReplica runs a replica with cfg until the test ends.
func startReplica(t *testing.T, cfg Config) *replica {
	t.Helper()
	m, err := Open(cfg, slog.New(slog.NewTextHandler(t.Output(), nil))) // shown when the test fails
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("replica: %v", err)
		}
	})
	conn, err := grpc.NewClient(m.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &replica{
		m:     m,
		admin: admin.NewClient("http://"+m.AdminAddr(), etcdAdminToken, &http.Client{Timeout: 10 * time.Second}),
		check: authv3.NewAuthorizationClient(conn),
		conn:  conn,
	}
}

// status runs a Check of secret and returns the HTTP status Envoy would
// give, or the gRPC error.
func (r *replica) status(t *testing.T, secret string) (int, error) {
	t.Helper()
	resp, err := r.check.Check(t.Context(), envoyRequest("Bearer "+secret))
	if err != nil {
		return 0, err
	}
	return httpStatusOf(resp), nil
}

// waitStatus waits until a Check of secret on r answers want.
func (r *replica) waitStatus(t *testing.T, secret string, want int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got, err := r.status(t, secret)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("check on %s = %d, %v; want %d within %s", r.m.GRPCAddr(), got, err, want, waitLimit)
		}
		time.Sleep(time.Millisecond)
	}
}

// readyz returns the status of r's /readyz.
func (r *replica) readyz(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + r.m.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// health returns r's gRPC health status for the Check service.
func (r *replica) health(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(r.conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLimit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEtcdReplicas runs three keygate replicas on a three-member etcd
// cluster and drives them as Envoy and an operator would: over gRPC Check
// and the admin API.
func TestEtcdReplicas(t *testing.T) {
	c := etcdtest.Start(t, 3)
	const maxStaleness = 2 * time.Second
	var rs []*replica
	for range 3 {
		rs = append(rs, startReplica(t, etcdConfig(c, maxStaleness)))
	}
	a, b, cc := rs[0], rs[1], rs[2]
	ctx := t.Context()

	acct, err := a.admin.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "acme", Balance: 1000})
	if err != nil {
		t.Fatal(err)
	}
	live, err := a.admin.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		r.waitStatus(t, live.Secret, http.StatusOK) // created on A, works on B and C
	}

	t.Run("Revocation", func(t *testing.T) {
		const revocations = 30
		var victims []*adminv1.CreateKeyResponse
		for range revocations {
			k, err := a.admin.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "victim"})
			if err != nil {
				t.Fatal(err)
			}
			victims = append(victims, k)
		}
		for _, k := range victims {
			for _, r := range []*replica{a, cc} {
				r.waitStatus(t, k.Secret, http.StatusOK)
			}
		}
		loadCtx, stop := context.WithCancel(ctx)
		var load sync.WaitGroup
		for _, r := range rs { // Checks of a live key meanwhile, on every replica
			load.Go(func() {
				for loadCtx.Err() == nil {
					if got, err := r.status(t, live.Secret); err == nil && got != http.StatusOK {
						t.Errorf("live key answered %d", got)
						return
					}
				}
			})
		}
		var delays []time.Duration
		for _, k := range victims {
			if _, err := b.admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: k.Key.Id}); err != nil {
				t.Fatal(err)
			}
			acked := time.Now()
			for _, r := range []*replica{a, cc} {
				r.waitStatus(t, k.Secret, http.StatusUnauthorized)
			}
			delays = append(delays, time.Since(acked))
		}
		stop()
		load.Wait()
		slices.Sort(delays)
		t.Logf("revoke acknowledged by B's admin API until Checks on A and C answer 401: p50 %s, p99 %s over %d revocations under Check load",
			delays[len(delays)/2], delays[len(delays)*99/100], len(delays))
	})

	t.Run("Debits", func(t *testing.T) {
		const perReplica = 10
		var wg sync.WaitGroup
		for i, r := range rs {
			wg.Go(func() {
				for n := range perReplica {
					_, err := r.admin.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: acct.Id, Amount: 7, IdempotencyKey: fmt.Sprintf("r%d-%d", i, n)})
					if err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		want := int64(1000 - len(rs)*perReplica*7)
		for i, r := range rs {
			waitUntil(t, fmt.Sprintf("balance on replica %d", i), func() bool {
				got, err := r.admin.GetAccount(ctx, &adminv1.GetAccountRequest{Account: acct.Id})
				return err == nil && got.Balance == want
			})
		}
	})

	t.Run("ClusterDown", func(t *testing.T) {
		if _, err := b.admin.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 5, IdempotencyKey: "before-outage"}); err != nil {
			t.Fatal(err)
		}
		before, err := b.admin.GetAccount(ctx, &adminv1.GetAccountRequest{Account: acct.Id})
		if err != nil {
			t.Fatal(err)
		}
		c.StopAll()
		for i, r := range rs {
			if got, err := r.status(t, live.Secret); err != nil || got != http.StatusOK {
				t.Errorf("replica %d right after the cluster stopped: %d, %v; want 200 from memory", i, got, err)
			}
		}
		_, err = a.admin.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: acct.Id, Amount: 1})
		if ae := (*admin.APIError)(nil); !errors.As(err, &ae) || ae.HTTPStatus != http.StatusServiceUnavailable {
			t.Errorf("debit with the cluster down: %v; want HTTP 503", err)
		}
		for i, r := range rs {
			waitUntil(t, fmt.Sprintf("replica %d answers UNAVAILABLE", i), func() bool {
				_, err := r.status(t, live.Secret)
				return status.Code(err) == codes.Unavailable
			})
			if got := r.readyz(t); got != http.StatusServiceUnavailable {
				t.Errorf("replica %d: /readyz %d with the cluster down", i, got)
			}
			waitUntil(t, fmt.Sprintf("replica %d gRPC health NOT_SERVING", i), func() bool {
				return r.health(t) == healthpb.HealthCheckResponse_NOT_SERVING
			})
		}

		c.RestartAll()
		for i, r := range rs {
			r.waitStatus(t, live.Secret, http.StatusOK)
			waitUntil(t, fmt.Sprintf("replica %d ready again", i), func() bool {
				return r.readyz(t) == http.StatusOK && r.health(t) == healthpb.HealthCheckResponse_SERVING
			})
			got, err := r.admin.GetAccount(ctx, &adminv1.GetAccountRequest{Account: acct.Id})
			if err != nil || got.Balance != before.Balance {
				t.Errorf("replica %d after the restart: %v, %v; want balance %d", i, got, err, before.Balance)
			}
		}
		if _, err := a.admin.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: live.Key.Id}); err != nil {
			t.Fatal(err)
		}
		cc.waitStatus(t, live.Secret, http.StatusUnauthorized)
	})

	metrics := scrape(t, a.m.AdminAddr())
	for _, name := range []string{"keygate_store_lag_seconds", "keygate_store_revision", "keygate_store_snapshots_total", "keygate_store_keys"} {
		if !strings.Contains(metrics, "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestEtcdNeedsAdminToken: replicas share one admin token, so keygate on
// etcd refuses to make its own.
func TestEtcdNeedsAdminToken(t *testing.T) {
	cfg := Config{Store: storeEtcd, Etcd: EtcdConfig{Endpoints: []string{"http://127.0.0.1:1"}}, GRPCAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0"}
	if _, err := Open(cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, errTokenRequired) {
		t.Errorf("Open without a token = %v, want %v", err, errTokenRequired)
	}
}
