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
	"errors"
	"fmt"
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

// Series names a keygate_checks_total series of one api: its decision and
// reason labels.
type Series [2]string

// Verify checks what g holds of api's metrics against what a test expects:
// every series of keygate_checks_total that New creates, with the counts in
// want and zero elsewhere, and timed checks observed by
// keygate_check_duration_seconds. It returns an error naming every
// difference.
func Verify(g prometheus.Gatherer, api string, want map[Series]int, timed uint64) error {
	got, observed, err := read(g, api)
	if err != nil {
		return err
	}
	var diffs []error
	all := []Series{{decisionError, reasonError}}
	for _, r := range authz.Reasons() {
		all = append(all, Series{Decision(r), r.String()})
	}
	if len(got) != len(all) {
		diffs = append(diffs, fmt.Errorf("keygate_checks_total{api=%q} has %d series, want %d: %v", api, len(got), len(all), got))
	}
	for _, series := range all {
		if n, ok := got[series]; !ok {
			diffs = append(diffs, fmt.Errorf("keygate_checks_total{api=%q}%v was not created up front", api, series))
		} else if n != want[series] {
			diffs = append(diffs, fmt.Errorf("keygate_checks_total{api=%q}%v = %d, want %d", api, series, n, want[series]))
		}
	}
	if observed != timed {
		diffs = append(diffs, fmt.Errorf("keygate_check_duration_seconds{api=%q} observed %d checks, want %d", api, observed, timed))
	}
	return errors.Join(diffs...)
}

// read returns what g holds of api's metrics: every keygate_checks_total
// series with its count, and the number of checks
// keygate_check_duration_seconds observed.
func read(g prometheus.Gatherer, api string) (checks map[Series]int, timed uint64, err error) {
	families, err := g.Gather()
	if err != nil {
		return nil, 0, err
	}
	checks = make(map[Series]int)
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			var s Series
			var apiOf string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "api":
					apiOf = l.GetValue()
				case "decision":
					s[0] = l.GetValue()
				case "reason":
					s[1] = l.GetValue()
				}
			}
			if apiOf != api {
				continue
			}
			switch mf.GetName() {
			case "keygate_checks_total":
				checks[s] = int(m.GetCounter().GetValue())
			case "keygate_check_duration_seconds":
				timed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return checks, timed, nil
}
