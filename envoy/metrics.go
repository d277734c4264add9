package envoy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
)

// Metric label values beyond the authz.Reason names.
const (
	decisionAllow = "allow"
	decisionDeny  = "deny"
	decisionError = "error"
	reasonError   = "store_error" // the reason label of decision="error"
)

// durationBuckets span a check answered from memory (tens of microseconds)
// up to Envoy's default ext_authz timeout of 200 ms.
var durationBuckets = []float64{
	.00001, .000025, .00005, .0001, .00025, .0005,
	.001, .0025, .005, .01, .025, .05, .1, .2,
}

// metrics holds the collectors of one Server. Every series is created up
// front so that the request path does no label lookup.
type metrics struct {
	checksVec *prometheus.CounterVec
	errors    prometheus.Counter
	duration  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) metrics {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "keygate_checks_total",
		Help: "Envoy ext_authz checks answered, by decision (allow, deny, error) and reason.",
	}, []string{"decision", "reason"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "keygate_check_duration_seconds",
		Help:    "Time to decide one Envoy ext_authz check, from request to response.",
		Buckets: durationBuckets,
	})
	if reg != nil {
		reg.MustRegister(checks, duration)
	}
	return metrics{
		checksVec: checks,
		errors:    checks.WithLabelValues(decisionError, reasonError),
		duration:  duration,
	}
}

// checks returns the counter of checks decided with r.
func (m metrics) checks(r authz.Reason) prometheus.Counter {
	return m.checksVec.WithLabelValues(decisionOf(r), r.String())
}

func decisionOf(r authz.Reason) string {
	if r == authz.ReasonAllowed {
		return decisionAllow
	}
	return decisionDeny
}
