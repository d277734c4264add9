// Package admin is keygate's key-management API: accounts, balances,
// ledgers and API keys, defined in proto/keygate/admin/v1 and served over
// gRPC (Service, GRPCServerOptions) and as JSON over HTTP (NewHandler),
// with a Go client for the latter (Client).
//
// # HTTP routes
//
// Each RPC's route is its google.api.http option in admin.proto. make
// generate derives this table from those options, and the OpenAPI 3.0
// document that GET /v1/openapi.json serves without a token:
//
//	POST /v1/accounts                    CreateAccount   {name, balance}
//	GET  /v1/accounts/{account}          GetAccount
//	GET  /v1/accounts                    ListAccounts    ?pageSize=&pageToken=
//	POST /v1/accounts/{account}:credit   CreditAccount   {amount, idempotencyKey}
//	POST /v1/accounts/{account}:debit    DebitAccount    {amount, idempotencyKey, key}
//	POST /v1/accounts/{account}:disable  DisableAccount
//	POST /v1/accounts/{account}:enable   EnableAccount
//	GET  /v1/accounts/{account}/ledger   ListLedger      ?pageSize=&pageToken=
//	POST /v1/accounts/{account}/keys     CreateKey       {name, expireTime}
//	GET  /v1/accounts/{account}/keys     ListKeys        ?pageSize=&pageToken=
//	GET  /v1/keys/{key}                  GetKey
//	POST /v1/keys/{key}:revoke           RevokeKey
//	POST /v1/keys/{key}:rotate           RotateKey       {gracePeriod}
//
// Requests and answers use the proto3 JSON mapping: lowerCamelCase names,
// int64 as a JSON string or number on input and a string on output,
// timestamps in RFC 3339, durations as "30s". A GET takes its fields from
// the query string; a POST from a JSON object body of at most 1 MiB, where
// an empty body counts as {}. The path fills the request's account or key
// field; a body that sets it to another value is refused. Answers emit zero
// values (a balance of "0", an empty list) and leave unset timestamps out.
//
// Every success is 200 with the resource itself, creations included.
// Every error is JSON, {"error":{"code":"...","message":"..."}}:
//
//	400 invalid_argument    malformed JSON, unknown field, bad value or id
//	401 unauthenticated     missing or wrong admin token
//	404 not_found           unknown account, key or route
//	405 method_not_allowed  with an Allow header
//	409 conflict            idempotency key reused with another amount; key not active
//	413 payload_too_large   body over 1 MiB
//	500 internal            details are logged, never sent
//	503 unavailable         the store cannot serve now
//	504 deadline_exceeded   the request's deadline passed
//
// The authz error codes map to gRPC codes and HTTP statuses through one
// table; conflict is codes.FailedPrecondition in gRPC.
//
// # Authentication
//
// Both transports require "Bearer <token>" in the Authorization header
// (gRPC: "authorization" metadata). Tokens are compared as SHA-256 digests
// in constant time. An empty configured token authenticates nobody, and
// neither does a token longer than authz.MaxAuthorizationLen allows.
//
// # Secrets
//
// CreateKey and RotateKey make the secret, hand the store only its hash and
// hint, and return it in their answer once. No other answer, log line or
// error message carries a secret or the admin token; answers are sent with
// Cache-Control: no-store.
package admin
