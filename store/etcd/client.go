package etcd

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ReconnectOptions are gRPC dial options for the etcd client of a Store
// (clientv3.Config.DialOptions). They retry a lost member every two seconds
// at most, instead of gRPC's default of up to two minutes, so that a
// replica catches up soon after its cluster comes back.
func ReconnectOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
		MinConnectTimeout: time.Second,
	})}
}
