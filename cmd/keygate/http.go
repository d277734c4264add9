package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/httpauth"
)

// checkFlags are the raw values of the flags that shape checks on both
// endpoints, parsed into a Config by apply.
type checkFlags struct {
	credentials, style string
}

// addCheckFlags registers the HTTP endpoint's flags in c and the route
// defaults' flags in the returned checkFlags.
func addCheckFlags(fs *flag.FlagSet, c *Config) *checkFlags {
	var f checkFlags
	fs.StringVar(&c.HTTPAddr, "http-addr", envOr("KEYGATE_HTTP_ADDR", ""), "`address` of the HTTP check endpoint for Envoy's HTTP ext_authz, Caddy forward_auth and nginx auth_request; off when empty (env KEYGATE_HTTP_ADDR)")
	fs.StringVar(&c.HTTPPathPrefix, "http-path-prefix", envOr("KEYGATE_HTTP_PATH_PREFIX", ""), "only paths under this `prefix` are checks on the HTTP endpoint, others are 404 (env KEYGATE_HTTP_PATH_PREFIX)")
	fs.StringVar(&f.credentials, "credential-headers", envOr("KEYGATE_CREDENTIAL_HEADERS", ""), "comma-separated `headers` that may carry the key on routes that do not say: authorization, x-api-key, api-key; when empty, authorization, and x-api-key too on Anthropic-style routes (env KEYGATE_CREDENTIAL_HEADERS)")
	fs.StringVar(&f.style, "error-style", envOr("KEYGATE_ERROR_STYLE", "openai"), "`style` of denial bodies on routes that do not say: openai or anthropic (env KEYGATE_ERROR_STYLE)")
	return &f
}

// apply sets c.Defaults from the flags.
func (f *checkFlags) apply(c *Config) error {
	var err error
	if f.credentials != "" {
		if c.Defaults.Sources, err = authz.ParseSources(f.credentials); err != nil {
			return usagef("--credential-headers: %v", err)
		}
	}
	if c.Defaults.Style, err = authz.ParseStyle(f.style); err != nil {
		return usagef("--error-style: %v", err)
	}
	return nil
}

// openHTTP binds the HTTP check endpoint, when one is configured, to decide
// with a and count its checks on reg.
func (m *Main) openHTTP(a *authz.Authorizer, reg prometheus.Registerer) error {
	if m.cfg.HTTPAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", m.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP check endpoint: %w", err)
	}
	m.httpLis = lis
	m.httpSrv = &http.Server{
		Handler:           httpauth.NewHandler(a, m.cfg.HTTPPathPrefix, reg),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	return nil
}

// stopHTTP lets the HTTP check endpoint's in-flight checks finish until ctx
// is done, then closes it.
func (m *Main) stopHTTP(ctx context.Context) error {
	if m.httpSrv == nil {
		return nil
	}
	err := m.httpSrv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return m.httpSrv.Close()
	}
	return err
}

// HTTPAddr is the bound address of the HTTP check endpoint, "" when off.
func (m *Main) HTTPAddr() string {
	if m.httpLis == nil {
		return ""
	}
	return m.httpLis.Addr().String()
}
