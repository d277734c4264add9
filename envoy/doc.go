// Package envoy answers Envoy's ext_authz v3 gRPC Check calls with an
// authz.Authorizer. It copies the Authorization header out of the
// CheckRequest, and turns the Decision into a CheckResponse: the upstream
// request with identity headers on allow, an OpenAI-style JSON 401 or 403 on
// denial, and dynamic metadata (decision, reason, account and key ids) either
// way.
//
// Denials are answered from responses built once by NewServer; only answers
// that carry per-request ids are allocated, each in a single block. A store
// that cannot answer yields a gRPC UNAVAILABLE error, never a denial, so that
// Envoy applies its failure_mode_allow or status_on_error.
//
// Caveats: the CheckResponses returned by Check may be shared between calls
// and must not be modified. Only the v3 API is served; Envoy removed v2 in 2021.
package envoy
