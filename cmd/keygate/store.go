package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/etcd"
)

// Store kinds for --store.
const (
	storeBolt = "bolt"
	storeEtcd = "etcd"
)

// servedStore is what serve needs of a store besides authz.Store.
type servedStore interface {
	authz.Store
	// ready returns nil when the store can answer checks.
	ready() error
	// collectors returns the store's metrics.
	collectors() []prometheus.Collector
}

// openStore opens the store c names; no name means bolt.
func openStore(ctx context.Context, c Config, log *slog.Logger) (servedStore, error) {
	switch c.Store {
	case storeBolt, "":
		s, err := bolt.Open(c.DBPath, bolt.Options{FlushInterval: c.FlushInterval})
		if err != nil {
			return nil, dbOpenError(err, c.DBPath)
		}
		return boltStore{s}, nil
	case storeEtcd:
		return openEtcd(ctx, c, log)
	}
	return nil, fmt.Errorf("unknown store %q: want %s or %s", c.Store, storeBolt, storeEtcd)
}

// storeSizeGauges exports the number of accounts and keys a store holds.
func storeSizeGauges(accounts, keys func() int) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_accounts", Help: "Accounts in the store.",
		}, func() float64 { return float64(accounts()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_keys", Help: "Keys in the store, of every state.",
		}, func() float64 { return float64(keys()) }),
	}
}

// boltStore serves a bolt.Store, which is always ready.
type boltStore struct{ *bolt.Store }

func (boltStore) ready() error { return nil }

func (s boltStore) collectors() []prometheus.Collector {
	return storeSizeGauges(func() int { return s.Stats().Accounts }, func() int { return s.Stats().Keys })
}

// etcdStore serves an etcd.Store, ready while it is fresh.
type etcdStore struct{ *etcd.Store }

func (s etcdStore) ready() error { return s.Ready() }

func (s etcdStore) collectors() []prometheus.Collector {
	return append(storeSizeGauges(func() int { return s.Stats().Accounts }, func() int { return s.Stats().Keys }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_lag_seconds",
			Help: "Time since this replica last confirmed that it holds every change in etcd; checks fail past --max-staleness.",
		}, func() float64 { return s.Stats().Lag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "keygate_store_revision", Help: "The etcd revision this replica holds.",
		}, func() float64 { return float64(s.Stats().Revision) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "keygate_store_snapshots_total", Help: "Snapshots loaded from etcd: one at start, one per resynchronisation.",
		}, func() float64 { return float64(s.Stats().Resyncs) }),
	)
}

// readinessInterval is how often gRPC health follows the store's readiness.
const readinessInterval = 250 * time.Millisecond

// followReadiness keeps the gRPC health status of the Check service in
// step with the store's readiness, so that Envoy's health checks move
// traffic off a replica that has lost etcd, until ctx is done.
func (m *Main) followReadiness(ctx context.Context) {
	t := time.NewTicker(readinessInterval)
	defer t.Stop()
	serving := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := m.store.ready()
		if (err == nil) == serving {
			continue
		}
		serving = err == nil
		st := healthpb.HealthCheckResponse_SERVING
		if !serving {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			m.log.Warn("not ready: gRPC health says NOT_SERVING", "err", err)
		} else {
			m.log.Info("ready again: gRPC health says SERVING")
		}
		m.health.SetServingStatus("", st)
		m.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
	}
}
