// Package checkmetricstest checks in tests what an adapter exported through
// checkmetrics, with prometheus/testutil.
package checkmetricstest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
)

// Assert checks api's metrics on reg, which holds no other api's:
// keygate_checks_total has every series
// from the start, with the counts in want (by reason label; store_error for
// decision="error") and zero elsewhere, and keygate_check_duration_seconds
// observed timed checks.
func Assert(t *testing.T, reg *prometheus.Registry, api string, want map[string]int, timed uint64) {
	t.Helper()
	var text strings.Builder
	text.WriteString("# HELP keygate_checks_total Checks answered, by API (grpc, http), decision (allow, deny, error) and reason.\n# TYPE keygate_checks_total counter\n")
	line := func(decision, reason string) {
		fmt.Fprintf(&text, "keygate_checks_total{api=%q,decision=%q,reason=%q} %d\n", api, decision, reason, want[reason])
	}
	line("error", "store_error")
	for _, r := range authz.Reasons() {
		line(checkmetrics.Decision(r), r.String())
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(text.String()), "keygate_checks_total"); err != nil {
		t.Error(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != "keygate_check_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if n := m.GetHistogram().GetSampleCount(); n != timed {
				t.Errorf("keygate_check_duration_seconds{api=%q} observed %d checks, want %d", api, n, timed)
			}
		}
		return
	}
	t.Errorf("no keygate_check_duration_seconds{api=%q}", api)
}
