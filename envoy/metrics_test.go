package envoy_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
	"github.com/keygate/keygate/envoy"
)

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	client := serve(t, envoy.NewServer(f.authz, reg))
	for _, auth := range [][]string{
		{f.bearer(f.activeKey)},
		{f.bearer(f.activeKey)},
		nil,
		{"Bearer " + authz.NewSecret()},
		{f.bearer(f.revokedKey)},
		{f.bearer(f.zeroKey)},
	} {
		if _, err := client.Check(t.Context(), envoyCheck(shapes[1], auth...)); err != nil {
			t.Fatal(err)
		}
	}
	assertCounts(t, reg, map[checkmetrics.Series]int{
		{"allow", "allowed"}:             2,
		{"deny", "no_credential"}:        1,
		{"deny", "unknown_key"}:          1,
		{"deny", "revoked_key"}:          1,
		{"deny", "insufficient_balance"}: 1,
	}, 6)
}

// assertCounts checks the gRPC API's metrics on reg (checkmetrics.Verify).
func assertCounts(t *testing.T, reg *prometheus.Registry, want map[checkmetrics.Series]int, timed uint64) {
	t.Helper()
	if err := checkmetrics.Verify(reg, checkmetrics.APIGRPC, want, timed); err != nil {
		t.Error(err)
	}
}
