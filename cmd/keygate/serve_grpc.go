package main

import (
	"runtime"

	"google.golang.org/grpc"

	"github.com/keygate/keygate/envoy"
)

// checkServerOptions are the options of the Check service's gRPC server:
// the wire codec, which hands Check its request undecoded (see
// envoy.WireCodec), and a fixed pool of stream workers, 128 per CPU (more
// than the Checks one Envoy keeps in flight), so that a stream runs on a
// goroutine whose stack has already grown instead of on a new one: with one
// worker per CPU most streams still found them all busy.
func checkServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(envoy.WireCodec()),
		grpc.NumStreamWorkers(uint32(128 * runtime.GOMAXPROCS(0))),
	}
}
