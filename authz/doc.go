// Package authz holds keygate's domain vocabulary (accounts, keys, ledger
// entries, the errors a store returns) and the decision that answers one
// request: allowed, or denied with a Reason.
//
// It imports only the standard library. Stores, the Envoy adapter and the
// admin API all speak in these types; only cmd/keygate wires them together.
package authz
