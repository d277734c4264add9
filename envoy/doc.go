// Package envoy answers Envoy's ext_authz v3 gRPC Check calls with an
// authz.Authorizer. It copies the key headers and the route's
// settings (context_extensions) out of the CheckRequest, and turns the
// Decision into a CheckResponse: the upstream request with identity headers
// and without the route's key headers on allow, the JSON 401, 403 or 500
// of answer.DenialFor on denial, and dynamic metadata (decision, reason,
// account and key ids) either way.
//
// Denials are answered from responses built once by NewServer, per reason
// and route; only answers that carry per-request ids are allocated,
// each in a single block. A store that cannot answer yields a gRPC UNAVAILABLE error, never a denial, so that
// Envoy applies its failure_mode_allow or status_on_error.
//
// A server made with WireCodec and RegisterWire (as keygate serve is) takes
// a cheaper path to the same answers: the codec hands Check the encoded
// request, a decoder walks its wire format for the fields RequestFromCheck
// reads, and the answer is written from bytes encoded ahead of time. It
// allocates nothing per Check; FuzzWireRequest and TestWireCheck hold it to
// the decoded path.
//
// Caveats: the CheckResponses returned by Check may be shared between calls
// and must not be modified. Only the v3 API is served; Envoy removed v2 in 2021.
package envoy
