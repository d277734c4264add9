// Package sdktest runs the official OpenAI and Anthropic SDKs, for Go and for
// Node, as clients of keygate behind Caddy and nginx configured as the
// README shows. It is a module of its own so that the SDKs stay out of
// keygate's go.mod; its tests need npm ci in node/ first (make test does it).
package sdktest
