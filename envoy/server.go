package envoy

import (
	"context"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
)

// Server implements authv3.AuthorizationServer over an authz.Authorizer. It
// is safe for concurrent use.
type Server struct {
	authorizer *authz.Authorizer
	outcomes   []outcome // indexed by authz.Reason
	metrics    *checkmetrics.Set
	templates  *templates // encoded answers of the wire path
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// NewServer returns a Server that decides with a and registers its metrics
// (checkmetrics, api="grpc") on reg; with a nil reg they are kept but not
// exported. It panics if they are already registered on reg.
func NewServer(a *authz.Authorizer, reg prometheus.Registerer) *Server {
	m := checkmetrics.New(reg, checkmetrics.APIGRPC)
	s := &Server{
		authorizer: a,
		outcomes:   make([]outcome, len(authz.Reasons())),
		metrics:    m,
		templates:  newTemplates(),
	}
	for _, r := range authz.Reasons() {
		s.outcomes[r] = newOutcome(r, m.Checks(r))
	}
	return s
}

// Check decides one request. A denial is an OK gRPC call whose CheckResponse
// carries a non-OK status; an error (codes.Unavailable) means the key store
// could not answer and Envoy should apply its failure policy.
//
// The returned CheckResponse may be shared with other calls and must not be
// modified.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	resp, err := s.check(ctx, req)
	s.metrics.Since(start)
	return resp, err
}

func (s *Server) check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	d, o, err := s.decide(ctx, RequestFromCheck(req))
	if err != nil {
		return nil, err
	}
	return o.respond(d), nil
}

// errUnavailable is Check's error when the key store could not answer.
var errUnavailable = status.Error(codes.Unavailable, "keygate: the key store could not answer")

// decide decides req and counts the decision. Its error is errUnavailable.
func (s *Server) decide(ctx context.Context, req authz.Request) (authz.Decision, *outcome, error) {
	d, err := s.authorizer.Authorize(ctx, req)
	if err != nil {
		s.metrics.Error()
		return d, nil, errUnavailable
	}
	o := &s.outcomes[d.Reason]
	o.checks.Inc()
	return d, o, nil
}

// RequestFromCheck copies what the decision needs out of an Envoy
// CheckRequest: the key headers (authorization, x-api-key, api-key) and the
// route's settings from context_extensions (authz.RouteKeyHeaders,
// authz.RouteErrorStyle). It never panics: missing attributes read as a
// request without a key on a route that sets nothing.
//
// Headers are looked up in attributes.request.http.headers (lower-case
// keys) and in header_map, which Envoy fills instead when encode_raw_headers
// is set. Several values of one header are joined with "," as Envoy joins
// repeated headers, so that they fail as one malformed value; joining stops
// once the value is longer than authz.MaxAuthorizationLen. A raw value
// longer than authz.MaxAuthorizationLen is cut to one byte more than that
// limit: it is rejected just the same, without copying the rest.
func RequestFromCheck(r *authv3.CheckRequest) authz.Request {
	attrs := r.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	var req authz.Request
	var found [authz.NumSources]bool // by authz.Source
	for _, s := range authz.AllSources() {
		*req.KeyHeader(s), found[s] = h.GetHeaders()[s.Header()]
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		s, ok := authz.SourceOf(hv.GetKey())
		if !ok {
			continue
		}
		v := req.KeyHeader(s)
		if found[s] && len(*v) > authz.MaxAuthorizationLen {
			continue // already rejected; joining more would cost quadratic time
		}
		hval := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			hval = rawString(raw)
		}
		if found[s] {
			*v += "," + hval
		} else {
			*v, found[s] = hval, true
		}
	}
	ext := attrs.GetContextExtensions()
	req.Route = authz.ParseRoute(ext[authz.RouteKeyHeaders], ext[authz.RouteErrorStyle])
	return req
}

func rawString(b []byte) string {
	if len(b) > authz.MaxAuthorizationLen {
		b = b[:authz.MaxAuthorizationLen+1]
	}
	return string(b)
}
