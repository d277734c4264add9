package envoy_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
	"github.com/keygate/keygate/checkmetrics/checkmetricstest"
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
	checkmetricstest.Assert(t, reg, checkmetrics.APIGRPC, map[string]int{
		"allowed":              2,
		"no_credential":        1,
		"unknown_key":          1,
		"revoked_key":          1,
		"insufficient_balance": 1,
	}, 6)
}
