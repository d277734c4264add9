package envoy_test

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
)

// TestCheckAllocs pins the allocations of one Check, called directly as the
// gRPC server calls it, with headers in the map (a raw_value costs one more
// copy). Denials that find no key are answered from prebuilt responses; an
// answer that names a key costs one block and the metadata map's two.
func TestCheckAllocs(t *testing.T) {
	f := newFixture(t)
	srv := envoy.NewServer(f.authz, prometheus.NewRegistry())
	ctx := context.Background()
	for _, c := range []struct {
		name string
		auth []string
		max  float64
	}{
		{"missing", nil, 0},
		{"not bearer", []string{"Basic dXNlcjpodW50ZXIy"}, 0},
		{"malformed", []string{"Bearer hunter2"}, 0},
		{"oversized", []string{"Bearer " + string(make([]byte, 100<<10))}, 0},
		{"unknown key", []string{"Bearer " + authz.NewSecret()}, 0},
		{"revoked", []string{f.bearer(f.revokedKey)}, 3},
		{"allowed", []string{f.bearer(f.activeKey)}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := envoyCheck(shapes[0], c.auth...)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := srv.Check(ctx, req); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > c.max {
				t.Errorf("Check allocates %v times, want at most %v", allocs, c.max)
			}
		})
	}
}

// BenchmarkCheck measures one Check without transport, on a store of
// 100,000 keys, with an Envoy-shaped request of 14 headers, three ways:
// "decoded" calls Check on a decoded CheckRequest; "proto" adds what gRPC's
// standard codec does around it (proto.Unmarshal of the request,
// proto.Marshal of the answer); "wire" is the wire path from encoded request
// to encoded answer (AppendCheck), which keygate serve runs.
func BenchmarkCheck(b *testing.B) {
	f := newFixture(b)
	for f.store.Stats().Keys < 100_000 {
		f.key(b, f.active.ID, "bench", time.Time{})
	}
	srv := envoy.NewServer(f.authz, prometheus.NewRegistry())
	for _, c := range []struct {
		name string
		auth string
	}{
		{"allow", f.bearer(f.activeKey)},
		{"unknown key", "Bearer " + authz.NewSecret()},
		{"malformed", "Bearer hunter2"},
	} {
		req := envoyCheck(shapes[0], c.auth)
		enc, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		for _, path := range []struct {
			name  string
			check func(ctx context.Context, buf []byte) ([]byte, error)
		}{
			{"decoded", func(ctx context.Context, buf []byte) ([]byte, error) {
				_, err := srv.Check(ctx, req)
				return buf, err
			}},
			{"proto", func(ctx context.Context, buf []byte) ([]byte, error) {
				var in authv3.CheckRequest
				if err := proto.Unmarshal(enc, &in); err != nil {
					return nil, err
				}
				resp, err := srv.Check(ctx, &in)
				if err != nil {
					return nil, err
				}
				return proto.MarshalOptions{}.MarshalAppend(buf[:0], resp)
			}},
			{"wire", func(ctx context.Context, buf []byte) ([]byte, error) {
				return srv.AppendCheck(ctx, buf[:0], enc)
			}},
		} {
			b.Run(path.name+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					buf := make([]byte, 0, 4096)
					for pb.Next() {
						var err error
						if buf, err = path.check(ctx, buf); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
