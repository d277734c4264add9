package envoy_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
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
	assertCounts(t, reg, map[[2]string]int{
		{"allow", "allowed"}:             2,
		{"deny", "no_credential"}:        1,
		{"deny", "unknown_key"}:          1,
		{"deny", "revoked_key"}:          1,
		{"deny", "insufficient_balance"}: 1,
	})

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	for _, mf := range families {
		if mf.GetName() == "keygate_check_duration_seconds" {
			observed = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if observed != 6 {
		t.Errorf("keygate_check_duration_seconds observed %d checks, want 6", observed)
	}
}

// assertCounts checks keygate_checks_total on reg: one series per Reason and
// one for errors, all created up front, with the counts in want (by
// decision and reason) and zero elsewhere.
func assertCounts(t *testing.T, reg *prometheus.Registry, want map[[2]string]int) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[[2]string]int)
	for _, mf := range families {
		if mf.GetName() != "keygate_checks_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var series [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "decision":
					series[0] = l.GetValue()
				case "reason":
					series[1] = l.GetValue()
				default:
					t.Errorf("unexpected label %s", l.GetName())
				}
			}
			got[series] = int(m.GetCounter().GetValue())
		}
	}

	all := [][2]string{{"error", "store_error"}}
	for _, r := range authz.Reasons() {
		decision := "deny"
		if r == authz.ReasonAllowed {
			decision = "allow"
		}
		all = append(all, [2]string{decision, r.String()})
	}
	if len(got) != len(all) {
		t.Errorf("keygate_checks_total has %d series, want %d: %v", len(got), len(all), got)
	}
	for _, series := range all {
		n, ok := got[series]
		if !ok {
			t.Errorf("keygate_checks_total%v was not created up front", series)
		} else if n != want[series] {
			t.Errorf("keygate_checks_total%v = %d, want %d", series, n, want[series])
		}
	}
}
