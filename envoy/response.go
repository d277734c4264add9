package envoy

import (
	"encoding/json"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/keygate/keygate/authz"
)

// Headers set on the upstream request of an allowed check.
const (
	HeaderAccountID = "x-account-id"
	HeaderKeyID     = "x-key-id"
)

// Fields of the dynamic metadata, which Envoy files under the
// envoy.filters.http.ext_authz namespace.
const (
	MetadataDecision  = "decision"   // "allow" or "deny"
	MetadataReason    = "reason"     // authz.Reason.String()
	MetadataAccountID = "account_id" // set when the key was found
	MetadataKeyID     = "key_id"     // set when the key was found
)

// realm is the protection space named in WWW-Authenticate (RFC 7235).
const realm = `Bearer realm="keygate"`

var (
	// noAppend is the deprecated HeaderValueOption.append set to false. Old
	// Envoys read only this field, and new ones prefer it to append_action.
	noAppend = wrapperspb.Bool(false)
	// stripped are the request headers the upstream must not see.
	stripped = []string{"authorization"}
)

// outcome is what Check answers for one authz.Reason. NewServer builds it;
// afterwards it is only read.
type outcome struct {
	checks   prometheus.Counter
	status   *rpcstatus.Status
	decision *structpb.Value // MetadataDecision
	reason   *structpb.Value // MetadataReason
	// denied is the HTTP reply of a denial; nil for ReasonAllowed.
	denied *authv3.CheckResponse_DeniedResponse
	// anonymous is the whole answer of a denial that found no key; nil for
	// ReasonAllowed.
	anonymous *authv3.CheckResponse
}

func newOutcome(r authz.Reason, checks prometheus.Counter) outcome {
	o := outcome{
		checks:   checks,
		decision: structpb.NewStringValue(decisionOf(r)),
		reason:   structpb.NewStringValue(r.String()),
	}
	if r == authz.ReasonAllowed {
		o.status = &rpcstatus.Status{Code: int32(codes.OK)}
		return o
	}

	e := apiErrorFor(r)
	code, httpStatus := codes.PermissionDenied, typev3.StatusCode_Forbidden
	headers := []*corev3.HeaderValueOption{newHeader("content-type", "application/json")}
	if r.Unauthenticated() {
		code, httpStatus = codes.Unauthenticated, typev3.StatusCode_Unauthorized
		challenge := realm
		if r.TokenPresented() {
			challenge += `, error="invalid_token"` // RFC 6750 §3.1
		}
		headers = append(headers, newHeader("www-authenticate", challenge))
	}
	// A struct of strings always marshals; this runs once per Reason.
	body, _ := json.Marshal(errorBody{Error: e})

	o.status = &rpcstatus.Status{Code: int32(code), Message: e.Message}
	o.denied = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: httpStatus},
		Headers: headers,
		Body:    string(body),
	}}
	o.anonymous = &authv3.CheckResponse{
		Status:       o.status,
		HttpResponse: o.denied,
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			MetadataDecision: o.decision,
			MetadataReason:   o.reason,
		}},
	}
	return o
}

// respond answers decision d, which was decided with this outcome's reason.
// A denial that found no key allocates nothing; an answer that names a key
// allocates three times: one block for the messages, two for the metadata map.
func (o *outcome) respond(d authz.Decision) *authv3.CheckResponse {
	switch {
	case d.Allowed():
		return o.allow(d)
	case d.KeyID == "" && d.AccountID == "":
		return o.anonymous
	}
	b := new(struct {
		resp authv3.CheckResponse
		md   metadata
	})
	b.resp.Status = o.status
	b.resp.HttpResponse = o.denied
	b.resp.DynamicMetadata = b.md.fill(o, d)
	return &b.resp
}

// allow builds an allow answer: the identity headers overwrite any copy the
// client sent, and the Authorization header is removed so that the upstream
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
	b.headers[0] = setHeader(&b.options[0], &b.values[0], HeaderAccountID, d.AccountID)
	b.headers[1] = setHeader(&b.options[1], &b.values[1], HeaderKeyID, d.KeyID)
	b.http.Headers = b.headers[:]
	b.http.HeadersToRemove = stripped
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
	o.Append = noAppend
	o.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	return o
}

// errorBody is the JSON body of a denial, in the shape OpenAI clients parse.
type errorBody struct {
	Error apiError `json:"error"`
}

type apiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"` // always null
	Code    string  `json:"code"`
}

// apiErrorFor returns the error a caller sees for a denial with r. Every
// reason that presented a Bearer token reads the same, so that a caller
// cannot tell an unknown key from a revoked or expired one.
func apiErrorFor(r authz.Reason) apiError {
	switch {
	case r == authz.ReasonNoCredential:
		return apiError{
			Message: "No API key was provided. Send your key in the Authorization header: \"Authorization: Bearer YOUR_API_KEY\".",
			Type:    "invalid_request_error",
			Code:    "invalid_api_key",
		}
	case r == authz.ReasonNotBearer:
		return apiError{
			Message: "The Authorization header does not use the Bearer scheme. Send your key as \"Authorization: Bearer YOUR_API_KEY\".",
			Type:    "invalid_request_error",
			Code:    "invalid_api_key",
		}
	case r.TokenPresented():
		return apiError{
			Message: "Incorrect API key provided. Check that the whole key was copied, or create a new one.",
			Type:    "invalid_request_error",
			Code:    "invalid_api_key",
		}
	case r == authz.ReasonInsufficientBalance:
		return apiError{
			Message: "Your account balance is exhausted. Top up your balance to continue making requests.",
			Type:    "insufficient_quota",
			Code:    "insufficient_balance",
		}
	case r == authz.ReasonAccountDisabled:
		return apiError{
			Message: "The account this API key belongs to is disabled.",
			Type:    "permission_error",
			Code:    "account_disabled",
		}
	}
	return apiError{
		Message: "This API key may not make this request.",
		Type:    "permission_error",
		Code:    "forbidden",
	}
}
