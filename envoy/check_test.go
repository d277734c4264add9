package envoy_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
	"github.com/keygate/keygate/checkmetrics/checkmetricstest"
	"github.com/keygate/keygate/envoy"
)

// denial is what a caller sees for a class of denials, apart from the
// message text.
type denial struct {
	http      typev3.StatusCode
	grpc      codes.Code
	challenge string // www-authenticate; "" for a 403
	errType   string
	errCode   string
}

var (
	noKey = &denial{typev3.StatusCode_Unauthorized, codes.Unauthenticated,
		`Bearer realm="keygate"`, "invalid_request_error", "invalid_api_key"}
	badKey = &denial{typev3.StatusCode_Unauthorized, codes.Unauthenticated,
		`Bearer realm="keygate", error="invalid_token"`, "invalid_request_error", "invalid_api_key"}
	noFunds = &denial{typev3.StatusCode_Forbidden, codes.PermissionDenied,
		"", "insufficient_quota", "insufficient_balance"}
	disabled = &denial{typev3.StatusCode_Forbidden, codes.PermissionDenied,
		"", "permission_error", "account_disabled"}
)

type checkCase struct {
	name   string
	auth   []string // Authorization values as sent; nil: no header
	reason authz.Reason
	deny   *denial    // nil: allowed
	key    *authz.Key // the key the answer names; nil: none was found
}

func (f *fixture) cases() []checkCase {
	secret := f.secret[f.activeKey.ID]
	wrong := "A" // a base62 checksum character that is not the right one
	if strings.HasSuffix(secret, wrong) {
		wrong = "B"
	}
	wrongSum := secret[:len(secret)-1] + wrong
	badUTF8 := secret[:10] + "\xff\xfe" + secret[12:]
	return []checkCase{
		{"missing", nil, authz.ReasonNoKey, noKey, nil},
		{"empty", []string{""}, authz.ReasonNoKey, noKey, nil},
		{"basic", []string{"Basic dXNlcjpodW50ZXIy"}, authz.ReasonNotBearer, noKey, nil},
		{"no scheme", []string{secret}, authz.ReasonNotBearer, noKey, nil},
		{"lower-case scheme", []string{"bearer " + secret}, authz.ReasonAllowed, nil, &f.activeKey},
		{"upper-case scheme, two spaces", []string{"BEARER  " + secret}, authz.ReasonAllowed, nil, &f.activeKey},
		{"garbage token", []string{"Bearer hunter2"}, authz.ReasonMalformedKey, badKey, nil},
		{"wrong checksum", []string{"Bearer " + wrongSum}, authz.ReasonMalformedKey, badKey, nil},
		{"oversized", []string{"Bearer " + strings.Repeat("A", 100<<10)}, authz.ReasonMalformedKey, badKey, nil},
		{"invalid utf-8", []string{"Bearer " + badUTF8}, authz.ReasonMalformedKey, badKey, nil},
		{"two headers", []string{f.bearer(f.activeKey), f.bearer(f.activeKey)}, authz.ReasonMalformedKey, badKey, nil},
		{"unknown key", []string{"Bearer " + authz.NewSecret()}, authz.ReasonUnknownKey, badKey, nil},
		{"revoked", []string{f.bearer(f.revokedKey)}, authz.ReasonRevokedKey, badKey, &f.revokedKey},
		{"expired", []string{f.bearer(f.expiredKey)}, authz.ReasonExpiredKey, badKey, &f.expiredKey},
		{"disabled account", []string{f.bearer(f.disabledKey)}, authz.ReasonAccountDisabled, disabled, &f.disabledKey},
		{"zero balance", []string{f.bearer(f.zeroKey)}, authz.ReasonInsufficientBalance, noFunds, &f.zeroKey},
		{"negative balance", []string{f.bearer(f.negativeKey)}, authz.ReasonInsufficientBalance, noFunds, &f.negativeKey},
		{"allowed", []string{f.bearer(f.activeKey)}, authz.ReasonAllowed, nil, &f.activeKey},
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	client := serve(t, envoy.NewServer(f.authz, prometheus.NewRegistry()))
	for _, s := range shapes {
		for _, c := range f.cases() {
			t.Run(s.name+"/"+c.name, func(t *testing.T) {
				got, err := client.Check(t.Context(), envoyCheck(s, c.auth...))
				if err != nil {
					t.Fatal(err)
				}
				assertResponse(t, got, c)
			})
		}
	}
}

// assertResponse compares the whole of got with what c expects. The message
// text is free, but must be the same in the gRPC status and the body.
func assertResponse(t *testing.T, got *authv3.CheckResponse, c checkCase) {
	t.Helper()
	var want *authv3.CheckResponse
	if c.deny == nil {
		want = &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					overwrite("x-account-id", c.key.AccountID),
					overwrite("x-key-id", c.key.ID),
				},
				HeadersToRemove: []string{"authorization"},
			}},
			DynamicMetadata: wantMetadata(t, "allow", c),
		}
	} else {
		body := got.GetDeniedResponse().GetBody()
		message := assertBody(t, body, c.deny)
		headers := []*corev3.HeaderValueOption{overwrite("content-type", "application/json")}
		if c.deny.challenge != "" {
			headers = append(headers, overwrite("www-authenticate", c.deny.challenge))
		}
		want = &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(c.deny.grpc), Message: message},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: c.deny.http},
				Headers: headers,
				Body:    body,
			}},
			DynamicMetadata: wantMetadata(t, "deny", c),
		}
	}
	if !proto.Equal(got, want) {
		t.Errorf("response:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

// overwrite is a header that replaces any copy of it, for Envoys that read
// only the deprecated append field and for those that read append_action.
func overwrite(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		Append:       wrapperspb.Bool(false), //nolint:staticcheck // old Envoys read only this field
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func wantMetadata(t *testing.T, decision string, c checkCase) *structpb.Struct {
	t.Helper()
	m := map[string]any{"decision": decision, "reason": c.reason.String()}
	if c.key != nil {
		m["account_id"] = c.key.AccountID
		m["key_id"] = c.key.ID
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// assertBody checks that body is the OpenAI-style error object of d and
// returns its message.
func assertBody(t *testing.T, body string, d *denial) string {
	t.Helper()
	var outer map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &outer); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	e, ok := outer["error"]
	if len(outer) != 1 || !ok {
		t.Fatalf("body %s: want one member, error", body)
	}
	if keys := slices.Sorted(maps.Keys(e)); !slices.Equal(keys, []string{"code", "message", "param", "type"}) {
		t.Errorf("error members %q, want code, message, param, type", keys)
	}
	if e["type"] != d.errType || e["code"] != d.errCode || e["param"] != nil {
		t.Errorf("body %s: want type %q, code %q, param null", body, d.errType, d.errCode)
	}
	message, _ := e["message"].(string)
	if message == "" {
		t.Errorf("body %s: no message", body)
	}
	if d == noFunds && !strings.Contains(strings.ToLower(message), "top up") {
		t.Errorf("message %q does not tell the caller to top up", message)
	}
	return message
}

// TestCheckSameForEveryBadToken checks that a caller cannot tell a malformed,
// unknown, revoked or expired key apart: only the metadata, which Envoy keeps
// for itself, differs.
func TestCheckSameForEveryBadToken(t *testing.T) {
	f := newFixture(t)
	client := serve(t, envoy.NewServer(f.authz, nil))
	var first *authv3.CheckResponse
	for _, c := range f.cases() {
		if !answer.Of(c.reason).TokenPresented() {
			continue
		}
		got, err := client.Check(t.Context(), envoyCheck(shapes[0], c.auth...))
		if err != nil {
			t.Fatal(err)
		}
		got.DynamicMetadata = nil
		if first == nil {
			first = got
		} else if !proto.Equal(got, first) {
			t.Errorf("%s reads differently:\n%s\nthan:\n%s", c.name, prototext.Format(got), prototext.Format(first))
		}
	}
}

// TestCheckSeesWritesAtOnce checks that there is no cache between the store
// and Check: the next Check after a write sees it.
func TestCheckSeesWritesAtOnce(t *testing.T) {
	f := newFixture(t)
	client := serve(t, envoy.NewServer(f.authz, nil))
	ctx := t.Context()
	check := func(k authz.Key) authz.Reason {
		t.Helper()
		resp, err := client.Check(ctx, envoyCheck(shapes[0], f.bearer(k)))
		if err != nil {
			t.Fatal(err)
		}
		r := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
		i := slices.IndexFunc(authz.Reasons(), func(reason authz.Reason) bool { return reason.String() == r })
		if i < 0 {
			t.Fatalf("reason %q is not an authz.Reason", r)
		}
		return authz.Reasons()[i]
	}

	k := f.key(t, f.active.ID, "short-lived", time.Time{})
	if r := check(k); r != authz.ReasonAllowed {
		t.Fatalf("new key: %v", r)
	}
	if _, err := f.store.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if r := check(k); r != authz.ReasonRevokedKey {
		t.Errorf("after RevokeKey: %v, want %v", r, authz.ReasonRevokedKey)
	}

	if _, err := f.store.ChangeBalance(ctx, authz.BalanceChange{AccountID: f.zero.ID, Kind: authz.LedgerCredit, Amount: 5}); err != nil {
		t.Fatal(err)
	}
	if r := check(f.zeroKey); r != authz.ReasonAllowed {
		t.Errorf("after a top-up: %v, want %v", r, authz.ReasonAllowed)
	}

	if _, err := f.store.SetAccountStatus(ctx, f.active.ID, authz.AccountDisabled); err != nil {
		t.Fatal(err)
	}
	if r := check(f.activeKey); r != authz.ReasonAccountDisabled {
		t.Errorf("after disabling the account: %v, want %v", r, authz.ReasonAccountDisabled)
	}
}

// TestCheckMissingAttributes checks that requests without the fields Envoy
// always sends are 401s, not panics.
func TestCheckMissingAttributes(t *testing.T) {
	f := newFixture(t)
	srv := envoy.NewServer(f.authz, nil)
	client := serve(t, srv)
	noCredential := checkCase{reason: authz.ReasonNoKey, deny: noKey}
	for name, req := range map[string]*authv3.CheckRequest{
		"empty":              {},
		"no request":         {Attributes: &authv3.AttributeContext{}},
		"no http":            {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
		"no headers":         {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{}}}},
		"empty header_map":   envoyCheckWithMapEntries(),
		"authorization, nil": envoyCheckWithMapEntries(&corev3.HeaderValue{Key: "authorization"}),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := client.Check(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			assertResponse(t, got, noCredential)
		})
	}
	// Messages gRPC would not marshal, for callers that use Server directly.
	for name, req := range map[string]*authv3.CheckRequest{
		"nil request":         nil,
		"nil header_map item": envoyCheckWithMapEntries(nil),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := srv.Check(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			assertResponse(t, got, noCredential)
		})
	}
}

// envoyCheckWithMapEntries is a request whose header_map holds only hs.
func envoyCheckWithMapEntries(hs ...*corev3.HeaderValue) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{Headers: hs}},
	}}}
}

// TestCheckStoreFailure checks that a store that cannot answer is a gRPC
// error, so that Envoy applies its failure_mode_allow or status_on_error,
// and never a denial (nor an allow). A closed bolt.Store is such a store.
func TestCheckStoreFailure(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	client := serve(t, envoy.NewServer(f.authz, reg))
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Check(t.Context(), envoyCheck(shapes[0], f.bearer(f.activeKey)))
	if status.Code(err) != codes.Unavailable || resp != nil {
		t.Fatalf("Check = %v, %v; want nil, code Unavailable", resp, err)
	}
	// A request refused before any lookup is still answered.
	resp, err = client.Check(t.Context(), envoyCheck(shapes[0], "Bearer hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	assertResponse(t, resp, checkCase{reason: authz.ReasonMalformedKey, deny: badKey})
	checkmetricstest.Assert(t, reg, checkmetrics.APIGRPC, map[string]int{"store_error": 1, "malformed_key": 1}, 2)
}
