package envoy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
)

// Fields of the dynamic metadata, which Envoy files under the
// envoy.filters.http.ext_authz namespace.
const (
	MetadataDecision  = "decision"   // "allow" or "deny"
	MetadataReason    = "reason"     // authz.Reason.String()
	MetadataAccountID = "account_id" // set when the key was found
	MetadataKeyID     = "key_id"     // set when the key was found
)

// noAppend is the deprecated HeaderValueOption.append set to false. Old
// Envoys read only this field, and new ones prefer it to append_action.
var noAppend = wrapperspb.Bool(false)

// outcome is what Check answers for one authz.Reason. NewServer builds it;
// afterwards it is only read.
type outcome struct {
	checks   prometheus.Counter
	status   *rpcstatus.Status // of an allow; denials take theirs from denial
	decision *structpb.Value   // MetadataDecision
	reason   *structpb.Value   // MetadataReason
	// denials are the answers of a denial by the route's authz.Style and
	// authz.Sources; nil for ReasonAllowed.
	denials *[authz.NumStyles][authz.NumSourceSets]denial
}

// denial is the answer to a denial with one reason on one route, built from
// answer.DenialFor.
type denial struct {
	status *rpcstatus.Status
	denied *authv3.CheckResponse_DeniedResponse
	// anonymous is the whole answer of a denial that found no key.
	anonymous *authv3.CheckResponse
}

func newOutcome(r authz.Reason, checks prometheus.Counter) outcome {
	o := outcome{
		checks:   checks,
		status:   &rpcstatus.Status{Code: int32(codes.OK)},
		decision: structpb.NewStringValue(checkmetrics.Decision(r)),
		reason:   structpb.NewStringValue(r.String()),
	}
	if r == authz.ReasonAllowed {
		return o
	}
	o.denials = new([authz.NumStyles][authz.NumSourceSets]denial)
	for _, s := range authz.Styles() {
		for set := authz.Sources(1); set < authz.NumSourceSets; set++ {
			o.denials[s][set] = o.newDenial(answer.DenialFor(r, authz.Route{Sources: set, Style: s}))
		}
	}
	return o
}

func (o *outcome) newDenial(d *answer.Denial) denial {
	headers := []*corev3.HeaderValueOption{newHeader(answer.HeaderContentType, answer.ContentType)}
	if d.Challenge != "" {
		headers = append(headers, newHeader(answer.HeaderChallenge, d.Challenge))
	}
	n := denial{
		status: &rpcstatus.Status{Code: int32(grpcCode(d.Status)), Message: d.Message},
		denied: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
			Headers: headers,
			Body:    d.Body,
		}},
	}
	n.anonymous = &authv3.CheckResponse{
		Status:       n.status,
		HttpResponse: n.denied,
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			MetadataDecision: o.decision,
			MetadataReason:   o.reason,
		}},
	}
	return n
}

// grpcCode is the gRPC status code of a denial with an HTTP status, for
// tracing and for clients other than Envoy, which reads only the HTTP status.
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	}
	return codes.Internal
}

// respond answers decision d, which was decided with this outcome's reason.
// A denial that found no key allocates nothing; an answer that names a key
// allocates three times: one block for the messages, two for the metadata map.
func (o *outcome) respond(d authz.Decision) *authv3.CheckResponse {
	if d.Allowed() {
		return o.allow(d)
	}
	n := &o.denials[d.Route.Style][d.Route.Sources]
	if d.KeyID == "" && d.AccountID == "" {
		return n.anonymous
	}
	b := new(struct {
		resp authv3.CheckResponse
		md   metadata
	})
	b.resp.Status = n.status
	b.resp.HttpResponse = n.denied
	b.resp.DynamicMetadata = b.md.fill(o, d)
	return &b.resp
}

// allow builds an allow answer: the identity headers overwrite any copy the
// client sent, and the route's key headers are removed so that the upstream
// never sees the secret.
func (o *outcome) allow(d authz.Decision) *authv3.CheckResponse {
	b := new(struct {
		resp    authv3.CheckResponse
		ok      authv3.CheckResponse_OkResponse
		http    authv3.OkHttpResponse
		headers [2]*corev3.HeaderValueOption
		options [2]corev3.HeaderValueOption
		values  [2]corev3.HeaderValue
		md      metadata
	})
	b.headers[0] = setHeader(&b.options[0], &b.values[0], answer.HeaderAccountID, d.AccountID)
	b.headers[1] = setHeader(&b.options[1], &b.values[1], answer.HeaderKeyID, d.KeyID)
	b.http.Headers = b.headers[:]
	b.http.HeadersToRemove = d.Route.Sources.Headers()
	b.ok.OkResponse = &b.http
	b.resp.Status = o.status
	b.resp.HttpResponse = &b.ok
	b.resp.DynamicMetadata = b.md.fill(o, d)
	return &b.resp
}

// metadata is the dynamic metadata of an answer that names a key.
type metadata struct {
	s       structpb.Struct
	values  [2]structpb.Value
	strings [2]structpb.Value_StringValue
}

func (m *metadata) fill(o *outcome, d authz.Decision) *structpb.Struct {
	m.s.Fields = make(map[string]*structpb.Value, 4)
	m.s.Fields[MetadataDecision] = o.decision
	m.s.Fields[MetadataReason] = o.reason
	m.add(0, MetadataAccountID, d.AccountID)
	m.add(1, MetadataKeyID, d.KeyID)
	return &m.s
}

func (m *metadata) add(i int, name, v string) {
	if v == "" {
		return
	}
	m.strings[i].StringValue = v
	m.values[i].Kind = &m.strings[i]
	m.s.Fields[name] = &m.values[i]
}

func newHeader(key, value string) *corev3.HeaderValueOption {
	return setHeader(new(corev3.HeaderValueOption), new(corev3.HeaderValue), key, value)
}

// setHeader makes o replace any existing key with value, on old and new Envoy
// alike, and returns o.
func setHeader(o *corev3.HeaderValueOption, h *corev3.HeaderValue, key, value string) *corev3.HeaderValueOption {
	h.Key, h.Value = key, value
	o.Header = h
	o.Append = noAppend //nolint:staticcheck // deprecated, and still what Envoys before append_action read
	o.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return o
}
