package envoy_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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

// BenchmarkCheck measures Check, called directly, on a store of 100,000 keys,
// with an Envoy-shaped request of 14 headers.
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
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := srv.Check(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
