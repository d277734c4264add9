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
)

// Store kinds for --store.
const (
	storeBolt = "bolt"
	storeEtcd = "etcd"
)

// servedStore is what serve needs of a store besides authz.Store; both
// *bolt.Store and *etcd.Store have it.
type servedStore interface {
	authz.Store
	// Ready returns nil when the store can answer checks.
	Ready() error
	// Collectors returns the store's metrics.
	Collectors() []prometheus.Collector
}

// openStore opens the store c names; no name means bolt.
func openStore(ctx context.Context, c Config, log *slog.Logger) (servedStore, error) {
	switch c.Store {
	case storeBolt, "":
		s, err := bolt.Open(c.DBPath, bolt.Options{FlushInterval: c.FlushInterval, Logger: log})
		if err != nil {
			return nil, dbOpenError(err, c.DBPath)
		}
		return s, nil
	case storeEtcd:
		s, err := openEtcd(ctx, c, log)
		if err != nil { // not a nil *etcd.Store in a non-nil servedStore
			return nil, err
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown store %q: want %s or %s", c.Store, storeBolt, storeEtcd)
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
		err := m.store.Ready()
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
