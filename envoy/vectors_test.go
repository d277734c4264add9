package envoy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
)

// The denial bodies, byte for byte, as clients receive them.
const (
	openAINoKey     = `{"error":{"message":"No API key was provided. Send your key in the Authorization header: \"Authorization: Bearer YOUR_API_KEY\".","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	openAINotBearer = `{"error":{"message":"The Authorization header does not use the Bearer scheme. Send your key as \"Authorization: Bearer YOUR_API_KEY\".","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	openAIConflict  = `{"error":{"message":"The request carries more than one API key, and they differ. Send one key.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	openAIBadKey    = `{"error":{"message":"Incorrect API key provided. Check that the whole key was copied, or create a new one.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	openAIDisabled  = `{"error":{"message":"The account this API key belongs to is disabled.","type":"permission_error","param":null,"code":"account_disabled"}}`
	openAINoFunds   = `{"error":{"message":"Your account balance is exhausted. Top up your balance to continue making requests.","type":"insufficient_quota","param":null,"code":"insufficient_balance"}}`
	openAIBadRoute  = `{"error":{"message":"The API gateway is misconfigured for this route. Contact its operator.","type":"server_error","param":null,"code":"gateway_misconfigured"}}`

	anthropicNoKey   = `{"type":"error","error":{"type":"authentication_error","message":"No API key was provided. Send your key in the x-api-key header: \"x-api-key: YOUR_API_KEY\"."}}`
	anthropicBadKey  = `{"type":"error","error":{"type":"authentication_error","message":"Incorrect API key provided. Check that the whole key was copied, or create a new one."}}`
	anthropicNoFunds = `{"type":"error","error":{"type":"permission_error","message":"Your account balance is exhausted. Top up your balance to continue making requests."}}`
	// On a route that accepts both headers Anthropic's SDKs send.
	anthropicNoKeyEither = `{"type":"error","error":{"type":"authentication_error","message":"No API key was provided. Send your key in one of these headers: \"Authorization: Bearer YOUR_API_KEY\" or \"x-api-key: YOUR_API_KEY\"."}}`
	anthropicConflict    = `{"type":"error","error":{"type":"authentication_error","message":"The request carries more than one API key, and they differ. Send one key."}}`
)

// vector is a CheckRequest shaped as Envoy's ext_authz filter builds it
// (source/extensions/filters/common/ext_authz/check_request_utils.cc), and
// the whole answer keygate owes it.
type vector struct {
	name string
	// req is the CheckRequest in protobuf text format, as in Envoy's own
	// fuzz corpora. $ACTIVE, $OTHER, $REVOKED, $DISABLED and $ZERO stand for
	// the secrets of the fixture's keys.
	req  string
	want want
}

// want is the answer to a vector: an allow naming key and stripping
// headers, or a denial with reason, HTTP status, challenge and body (and the
// key, when it was found).
type want struct {
	reason    authz.Reason
	key       string // "ACTIVE", ...; "" when no key was found
	strip     []string
	status    int
	challenge string
	body      string
}

func allowAs(key string, strip ...string) want {
	return want{reason: authz.ReasonAllowed, key: key, strip: strip}
}

// unauthenticated is a 401, whose challenge says whether a token was
// presented (RFC 6750 error="invalid_token") or several were
// (error="invalid_request").
func unauthenticated(r authz.Reason, key, body string) want {
	c := `Bearer realm="keygate"`
	switch r {
	case authz.ReasonConflictingKeys:
		c += `, error="invalid_request"`
	case authz.ReasonMalformedKey, authz.ReasonUnknownKey, authz.ReasonRevokedKey, authz.ReasonExpiredKey:
		c += `, error="invalid_token"`
	}
	return want{reason: r, key: key, status: 401, challenge: c, body: body}
}

func forbidden(r authz.Reason, key, body string) want {
	return want{reason: r, key: key, status: 403, body: body}
}

// Text-format fragments that every vector shares. Envoy fills source with
// the downstream TCP peer, destination with its own listener address, and
// request.time with the time the request started.
const (
	peers = `
  source { address { socket_address { address: "10.0.3.17" port_value: 51234 } } }
  destination { address { socket_address { address: "10.0.0.5" port_value: 8080 } } }`
	started = `time { seconds: 1772373600 nanos: 125000000 }`
)

func envoyVectors() []vector {
	return []vector{{
		name: "HTTP/1.1 POST, Bearer key, behind a load balancer",
		// HTTP/1.1 Host becomes :authority; Envoy adds :scheme,
		// x-forwarded-proto, x-request-id, and with use_remote_address
		// appends the peer to x-forwarded-for and sets
		// x-envoy-external-address. The client's x-account-id travels to
		// keygate and is overwritten on allow.
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      id: "11537406282374925396"
      method: "POST"
      headers { key: ":authority" value: "api.example.com" }
      headers { key: ":method" value: "POST" }
      headers { key: ":path" value: "/v1/chat/completions?stream=true" }
      headers { key: ":scheme" value: "https" }
      headers { key: "authorization" value: "Bearer $ACTIVE" }
      headers { key: "content-length" value: "187" }
      headers { key: "content-type" value: "application/json" }
      headers { key: "user-agent" value: "OpenAI/Python 1.54.0" }
      headers { key: "x-account-id" value: "acct_SPOOFED" }
      headers { key: "x-envoy-external-address" value: "198.51.100.23" }
      headers { key: "x-forwarded-for" value: "203.0.113.7, 198.51.100.23" }
      headers { key: "x-forwarded-proto" value: "https" }
      headers { key: "x-request-id" value: "6b1d2c9e-6f3a-4c55-9d0e-2f8a1b7c4d10" }
      path: "/v1/chat/completions?stream=true"
      host: "api.example.com"
      scheme: "https"
      protocol: "HTTP/1.1"
    }
  }
}`,
		want: allowAs("ACTIVE", "authorization"),
	}, {
		name: "HTTP/2 gRPC call, lower-case scheme",
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      id: "42"
      method: "POST"
      headers { key: ":authority" value: "inference.internal:8443" }
      headers { key: ":method" value: "POST" }
      headers { key: ":path" value: "/inference.v1.Generate/Stream" }
      headers { key: ":scheme" value: "http" }
      headers { key: "authorization" value: "bearer $ACTIVE" }
      headers { key: "content-type" value: "application/grpc" }
      headers { key: "grpc-timeout" value: "30S" }
      headers { key: "te" value: "trailers" }
      headers { key: "x-forwarded-proto" value: "http" }
      headers { key: "x-request-id" value: "0d4b2f0e-2f5e-4c55-9a38-5c1f0f1ed8a1" }
      path: "/inference.v1.Generate/Stream"
      host: "inference.internal:8443"
      scheme: "http"
      protocol: "HTTP/2"
    }
  }
}`,
		want: allowAs("ACTIVE", "authorization"),
	}, {
		name: "HTTP/1.0 GET with no credential",
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      id: "7"
      method: "GET"
      headers { key: ":authority" value: "api.example.com" }
      headers { key: ":method" value: "GET" }
      headers { key: ":path" value: "/v1/models" }
      headers { key: ":scheme" value: "http" }
      headers { key: "x-forwarded-proto" value: "http" }
      headers { key: "x-request-id" value: "a3c1" }
      path: "/v1/models"
      host: "api.example.com"
      scheme: "http"
      protocol: "HTTP/1.0"
    }
  }
}`,
		want: unauthenticated(authz.ReasonNoKey, "", openAINoKey),
	}, {
		name: "encode_raw_headers: header_map with raw_value, a non-UTF-8 header left as sent",
		// With encode_raw_headers Envoy fills header_map, one entry per
		// header line in order, with the bytes in raw_value, and leaves
		// headers empty.
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      id: "9"
      method: "POST"
      header_map {
        headers { key: ":authority" raw_value: "api.example.com" }
        headers { key: ":path" raw_value: "/v1/embeddings" }
        headers { key: ":method" raw_value: "POST" }
        headers { key: ":scheme" raw_value: "https" }
        headers { key: "x-trace" raw_value: "\300\300" }
        headers { key: "authorization" raw_value: "Bearer $ACTIVE" }
        headers { key: "x-forwarded-proto" raw_value: "https" }
      }
      path: "/v1/embeddings"
      host: "api.example.com"
      scheme: "https"
      protocol: "HTTP/1.1"
    }
  }
}`,
		want: allowAs("ACTIVE", "authorization"),
	}, {
		name: "encode_raw_headers: two authorization lines stay two entries",
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      method: "POST"
      header_map {
        headers { key: ":authority" raw_value: "api.example.com" }
        headers { key: ":path" raw_value: "/v1/embeddings" }
        headers { key: "authorization" raw_value: "Bearer $ACTIVE" }
        headers { key: "authorization" raw_value: "Bearer $ACTIVE" }
      }
      path: "/v1/embeddings"
      protocol: "HTTP/1.1"
    }
  }
}`,
		want: unauthenticated(authz.ReasonMalformedKey, "", openAIBadKey),
	}, {
		name: "headers map: repeated authorization joined with a comma",
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      method: "POST"
      headers { key: ":authority" value: "api.example.com" }
      headers { key: ":path" value: "/v1/completions" }
      headers { key: "authorization" value: "Bearer $ACTIVE,Bearer $OTHER" }
      path: "/v1/completions"
      protocol: "HTTP/1.1"
    }
  }
}`,
		want: unauthenticated(authz.ReasonMalformedKey, "", openAIBadKey),
	}, {
		name: "headers map: invalid UTF-8 replaced with '!' elsewhere does not matter",
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      method: "POST"
      headers { key: ":authority" value: "api.example.com" }
      headers { key: ":path" value: "/v1/completions" }
      headers { key: "authorization" value: "Bearer $ACTIVE" }
      headers { key: "user-agent" value: "curl/8!!" }
      path: "/v1/completions"
      protocol: "HTTP/1.1"
    }
  }
}`,
		want: allowAs("ACTIVE", "authorization"),
	}, {
		name: "headers map: a key with invalid UTF-8, replaced with '!', is malformed",
		req: `attributes {` + peers + `
  request {
    ` + started + `
    http {
      method: "POST"
      headers { key: ":path" value: "/v1/completions" }
      headers { key: "authorization" value: "Bearer sk-kg-!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }
      path: "/v1/completions"
      protocol: "HTTP/2"
    }
  }
}`,
		want: unauthenticated(authz.ReasonMalformedKey, "", openAIBadKey),
	}, {
		name: "Basic credentials are not a key",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "GET"
    headers { key: ":path" value: "/" }
    headers { key: "authorization" value: "Basic dXNlcjpodW50ZXIy" }
    path: "/" protocol: "HTTP/1.1" } }
}`,
		want: unauthenticated(authz.ReasonNotBearer, "", openAINotBearer),
	}, {
		name: "mTLS peer: principal, URL-encoded certificate and SNI are ignored",
		// include_peer_certificate and include_tls_session add these; the
		// principal is the peer certificate's URI SAN.
		req: `attributes {
  source {
    address { socket_address { address: "10.0.3.17" port_value: 51234 } }
    principal: "spiffe://cluster.local/ns/apps/sa/chatbot"
    certificate: "-----BEGIN%20CERTIFICATE-----%0AMIIB%0A-----END%20CERTIFICATE-----%0A"
  }
  destination {
    address { socket_address { address: "10.0.0.5" port_value: 8443 } }
    principal: "spiffe://cluster.local/ns/edge/sa/envoy"
  }
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":authority" value: "api.example.com" }
    headers { key: ":path" value: "/v1/chat/completions" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    headers { key: "x-forwarded-client-cert" value: "By=spiffe://cluster.local/ns/edge/sa/envoy;URI=spiffe://cluster.local/ns/apps/sa/chatbot" }
    path: "/v1/chat/completions" host: "api.example.com" scheme: "https" protocol: "HTTP/2" } }
  tls_session { sni: "api.example.com" }
}`,
		want: allowAs("ACTIVE", "authorization"),
	}, {
		name: "with_request_body: the body and x-envoy-auth-partial-body are ignored",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/chat/completions" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    headers { key: "x-envoy-auth-partial-body" value: "true" }
    path: "/v1/chat/completions" protocol: "HTTP/1.1"
    body: "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":"
    size: 4096 } }
}`,
		want: allowAs("ACTIVE", "authorization"),
	}, {
		name: "revoked key: the metadata names it, the caller cannot tell",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/chat/completions" }
    headers { key: "authorization" value: "Bearer $REVOKED" }
    path: "/v1/chat/completions" protocol: "HTTP/2" } }
}`,
		want: unauthenticated(authz.ReasonRevokedKey, "REVOKED", openAIBadKey),
	}, {
		name: "disabled account",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/chat/completions" }
    headers { key: "authorization" value: "Bearer $DISABLED" }
    path: "/v1/chat/completions" protocol: "HTTP/1.1" } }
}`,
		want: forbidden(authz.ReasonAccountDisabled, "DISABLED", openAIDisabled),
	}, {
		name: "zero balance",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/chat/completions" }
    headers { key: "authorization" value: "Bearer $ZERO" }
    path: "/v1/chat/completions" protocol: "HTTP/1.1" } }
}`,
		want: forbidden(authz.ReasonInsufficientBalance, "ZERO", openAINoFunds),
	}, {
		name: "x-api-key on the default route is not read, nor stripped",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/messages" }
    headers { key: "x-api-key" value: "$ACTIVE" }
    path: "/v1/messages" protocol: "HTTP/1.1" } }
}`,
		want: unauthenticated(authz.ReasonNoKey, "", openAINoKey),
	}, {
		name: "Anthropic route: x-api-key, stripped alone",
		// ExtAuthzPerRoute check_settings.context_extensions, merged by
		// Envoy from the virtual host and the route, arrive in
		// context_extensions; keys keygate does not know are ignored.
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":authority" value: "api.example.com" }
    headers { key: ":path" value: "/anthropic/v1/messages" }
    headers { key: "anthropic-version" value: "2023-06-01" }
    headers { key: "authorization" value: "Bearer for-the-upstream" }
    headers { key: "x-api-key" value: "$ACTIVE" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "x-api-key" }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
  context_extensions { key: "virtual_host" value: "api" }
}`,
		want: allowAs("ACTIVE", "x-api-key"),
	}, {
		name: "Anthropic route: no key, Anthropic body",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "x-api-key" }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: unauthenticated(authz.ReasonNoKey, "", anthropicNoKey),
	}, {
		name: "Anthropic route: unknown key",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    headers { key: "x-api-key" value: "sk-ant-api03-R2D2C3POnotAkeyOfOursAtAll0000000000" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "x-api-key" }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: unauthenticated(authz.ReasonUnknownKey, "", anthropicBadKey),
	}, {
		name: "Anthropic route: zero balance",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    headers { key: "x-api-key" value: "$ZERO" }
    path: "/anthropic/v1/messages" protocol: "HTTP/2" } }
  context_extensions { key: "keygate_credentials" value: "x-api-key" }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: forbidden(authz.ReasonInsufficientBalance, "ZERO", anthropicNoFunds),
	}, {
		name: "Anthropic style alone: Bearer, as Anthropic's SDKs send it since 2026-10; both headers stripped",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    headers { key: "anthropic-version" value: "2023-06-01" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    headers { key: "user-agent" value: "Anthropic/JS 1.16.0" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: allowAs("ACTIVE", "authorization", "x-api-key"),
	}, {
		name: "Anthropic style alone: x-api-key, as its older SDKs send it",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    headers { key: "x-api-key" value: "$ACTIVE" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: allowAs("ACTIVE", "authorization", "x-api-key"),
	}, {
		name: "Anthropic style alone: no key, both headers named",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: unauthenticated(authz.ReasonNoKey, "", anthropicNoKeyEither),
	}, {
		name: "Anthropic route accepting both: two different keys",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/anthropic/v1/messages" }
    headers { key: "authorization" value: "Bearer $OTHER" }
    headers { key: "x-api-key" value: "$ACTIVE" }
    path: "/anthropic/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "authorization,x-api-key" }
  context_extensions { key: "keygate_error_style" value: "anthropic" }
}`,
		want: unauthenticated(authz.ReasonConflictingKeys, "", anthropicConflict),
	}, {
		name: "Azure route: api-key",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21" }
    headers { key: "api-key" value: "$ACTIVE" }
    path: "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "api-key" }
}`,
		want: allowAs("ACTIVE", "api-key"),
	}, {
		name: "every source accepted: two that agree, all three stripped",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/messages" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    headers { key: "x-api-key" value: "$ACTIVE" }
    path: "/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "authorization, x-api-key, api-key" }
}`,
		want: allowAs("ACTIVE", "authorization", "x-api-key", "api-key"),
	}, {
		name: "every source accepted: an empty x-api-key does not count",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/messages" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    headers { key: "x-api-key" value: "" }
    path: "/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "authorization,x-api-key,api-key" }
}`,
		want: allowAs("ACTIVE", "authorization", "x-api-key", "api-key"),
	}, {
		name: "every source accepted: two keys that disagree",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/messages" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    headers { key: "api-key" value: "$OTHER" }
    path: "/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "authorization,x-api-key,api-key" }
}`,
		want: unauthenticated(authz.ReasonConflictingKeys, "", openAIConflict),
	}, {
		name: "every source accepted, raw headers: a key and a revoked key disagree",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    header_map {
      headers { key: ":path" raw_value: "/v1/messages" }
      headers { key: "X-Api-Key" raw_value: "$REVOKED" }
      headers { key: "authorization" raw_value: "Bearer $ACTIVE" }
    }
    path: "/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "authorization,x-api-key" }
}`,
		want: unauthenticated(authz.ReasonConflictingKeys, "", openAIConflict),
	}, {
		name: "a misspelt source fails closed with a 500",
		req: `attributes {` + peers + `
  request { ` + started + ` http {
    method: "POST"
    headers { key: ":path" value: "/v1/messages" }
    headers { key: "authorization" value: "Bearer $ACTIVE" }
    path: "/v1/messages" protocol: "HTTP/1.1" } }
  context_extensions { key: "keygate_credentials" value: "authorisation" }
}`,
		want: want{reason: authz.ReasonBadRoute, status: 500, body: openAIBadRoute},
	}}
}

// TestEnvoyVectors sends every vector to Check over a real gRPC connection,
// through gRPC's proto codec and through the wire path that keygate serve
// uses, and compares the whole CheckResponse: gRPC status, HTTP status, each
// header with its append semantics, headers_to_remove, body and dynamic
// metadata.
func TestEnvoyVectors(t *testing.T) {
	f := newFixture(t)
	keys := map[string]*authz.Key{
		"ACTIVE":   &f.activeKey,
		"REVOKED":  &f.revokedKey,
		"DISABLED": &f.disabledKey,
		"ZERO":     &f.zeroKey,
	}
	other := f.key(t, f.active.ID, "other", time.Time{})
	keys["OTHER"] = &other
	var pairs []string
	for name, k := range keys {
		pairs = append(pairs, "$"+name, f.secret[k.ID])
	}
	secrets := strings.NewReplacer(pairs...)
	srv := envoy.NewServer(f.authz, prometheus.NewRegistry())
	clients := []struct {
		name   string
		client authv3.AuthorizationClient
	}{
		{"proto", serve(t, srv)},
		{"wire", authv3.NewAuthorizationClient(serveWire(t, srv))},
	}

	for _, c := range clients {
		for _, v := range envoyVectors() {
			t.Run(c.name+"/"+v.name, func(t *testing.T) {
				check(t, c.client, secrets.Replace(v.req), v.want.response(t, keys))
			})
		}
	}
}

// check sends the request written in text format and compares the answer
// with want.
func check(t *testing.T, client authv3.AuthorizationClient, text string, want *authv3.CheckResponse) {
	t.Helper()
	req := new(authv3.CheckRequest)
	if err := prototext.Unmarshal([]byte(text), req); err != nil {
		t.Fatalf("vector does not parse: %v", err)
	}
	got, err := client.Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("response:\n%s\nwant:\n%s", prototext.Format(got), prototext.Format(want))
	}
}

// response builds the whole CheckResponse that w describes.
func (w want) response(t *testing.T, keys map[string]*authz.Key) *authv3.CheckResponse {
	t.Helper()
	c := checkCase{reason: w.reason, key: keys[w.key]}
	if w.key != "" && c.key == nil {
		t.Fatalf("no key %q in the fixture", w.key)
	}
	if w.reason == authz.ReasonAllowed {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{
					overwrite("x-account-id", c.key.AccountID),
					overwrite("x-key-id", c.key.ID),
				},
				HeadersToRemove: w.strip,
			}},
			DynamicMetadata: wantMetadata(t, "allow", c),
		}
	}
	code := map[int]codes.Code{401: codes.Unauthenticated, 403: codes.PermissionDenied, 500: codes.Internal}[w.status]
	headers := []*corev3.HeaderValueOption{overwrite("content-type", "application/json")}
	if w.challenge != "" {
		headers = append(headers, overwrite("www-authenticate", w.challenge))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: messageOf(t, w.body)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(w.status)},
			Headers: headers,
			Body:    w.body,
		}},
		DynamicMetadata: wantMetadata(t, "deny", c),
	}
}

// messageOf returns the message inside a denial body of either style.
func messageOf(t *testing.T, body string) string {
	t.Helper()
	var b struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &b); err != nil || b.Error.Message == "" {
		t.Fatalf("body %s has no message: %v", body, err)
	}
	return b.Error.Message
}
