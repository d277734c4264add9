// Package checkmetrics counts and times the checks keygate answers. The gRPC
// Check and the HTTP check endpoint export the same metrics, told apart by
// the api label:
//
//	keygate_checks_total{api, decision, reason}
//	keygate_check_duration_seconds{api}
//
// decision is allow, deny or error; reason is an authz.Reason name, or
// store_error for decision="error". Every series exists from the start, so
// that the request path does no label lookup and a rate over a series that
// has not happened yet is 0, not absent.
package checkmetrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
)

// The values of the api label.
const (
	APIGRPC = "grpc" // Envoy's ext_authz gRPC Check
	APIHTTP = "http" // the HTTP check endpoint
)

// Label values beyond the authz.Reason names.
const (
	decisionAllow = "allow"
	decisionDeny  = "deny"
	decisionError = "error"
	reasonError   = "store_error" // the reason of decision="error"
)

// durationBuckets span a check answered from memory (tens of microseconds)
// up to Envoy's default ext_authz timeout of 200 ms.
var durationBuckets = []float64{
	.00001, .000025, .00005, .0001, .00025, .0005,
	.001, .0025, .005, .01, .025, .05, .1, .2,
}

// Set holds the metrics of one API.
type Set struct {
	byReason []prometheus.Counter // indexed by authz.Reason
	errors   prometheus.Counter
	duration prometheus.Histogram
}

// New returns the metrics of api and registers them on reg; with a nil reg
// they are kept but not exported. Sets of different apis share a registry;
// registering one api twice panics.
func New(reg prometheus.Registerer, api string) *Set {
	if api != APIGRPC && api != APIHTTP {
		panic("checkmetrics: unknown api " + api)
	}
	labels := prometheus.Labels{"api": api}
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "keygate_checks_total",
		Help:        "Checks answered, by API (grpc, http), decision (allow, deny, error) and reason.",
		ConstLabels: labels,
	}, []string{"decision", "reason"})
	duration := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "keygate_check_duration_seconds",
		Help:        "Time to decide one check, from request to answer, by API.",
		Buckets:     durationBuckets,
		ConstLabels: labels,
	})
	if reg != nil {
		reg.MustRegister(checks, duration)
	}
	s := &Set{
		byReason: make([]prometheus.Counter, len(authz.Reasons())),
		errors:   checks.WithLabelValues(decisionError, reasonError),
		duration: duration,
	}
	for _, r := range authz.Reasons() {
		s.byReason[r] = checks.WithLabelValues(Decision(r), r.String())
	}
	return s
}

// Decision is the word for a decision with reason r, allow or deny, in the
// decision label (and in Envoy's dynamic metadata).
func Decision(r authz.Reason) string {
	if r == authz.ReasonAllowed {
		return decisionAllow
	}
	return decisionDeny
}

// Checks returns the counter of the checks decided with r.
func (s *Set) Checks(r authz.Reason) prometheus.Counter { return s.byReason[r] }

// Error counts a check that the key store could not answer.
func (s *Set) Error() { s.errors.Inc() }

// Since records the duration of a check that started at start.
func (s *Set) Since(start time.Time) { s.duration.Observe(time.Since(start).Seconds()) }
