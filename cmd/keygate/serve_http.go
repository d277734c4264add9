package main

import (
	"context"
	"errors"
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
func addCheckFlags(fs *flagSet, c *Config) *checkFlags {
	var f checkFlags
	fs.StringVar(&c.HTTPAddr, "http-addr", "", "`address` of the HTTP check endpoint for Caddy forward_auth, nginx auth_request, Traefik and Envoy's HTTP ext_authz; off when empty")
	fs.StringVar(&c.HTTPPathPrefix, "http-path-prefix", "", "only paths under this `prefix` are checks on the HTTP endpoint; others are 404")
	fs.StringVar(&f.credentials, "credential-headers", "", "comma-separated `headers` that may carry the key where a route does not say: authorization, x-api-key, api-key; when empty, authorization, and x-api-key too on Anthropic-style routes")
	fs.StringVar(&f.style, "error-style", "openai", "`style` of denial bodies where a route does not say: openai or anthropic")
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

// buildHTTP builds the HTTP check endpoint, when it has a listener, to
// decide with a and count its checks on reg.
func (m *Main) buildHTTP(a *authz.Authorizer, reg prometheus.Registerer) {
	if m.httpLis == nil {
		return
	}
	m.httpSrv = &http.Server{
		Handler:           httpauth.NewHandler(a, m.cfg.HTTPPathPrefix, reg),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
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
