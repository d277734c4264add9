// Module opa builds OPA-Envoy (github.com/open-policy-agent/opa-envoy-plugin)
// for keygate's benchmark, in a module of its own so that OPA's dependencies
// stay out of keygate's go.mod:
//
//	go build -o ../../bin/opa-envoy github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin
//
// policy.rego is the keygate job in Rego; bench/run writes the data
// document and the plugin's configuration.
package opa
