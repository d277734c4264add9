package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

// addSecurityFlags registers serve's TLS flags and --allow-insecure-admin
// in c.
func addSecurityFlags(fs *flagSet, c *Config) {
	fs.StringVar(&c.TLS.Cert, "tls-cert", "", "PEM `file` of the certificate every listener presents; read again when it changes")
	fs.StringVar(&c.TLS.Key, "tls-key", "", "PEM `file` of the certificate's private key")
	fs.StringVar(&c.TLS.ClientCA, "tls-client-ca", "", "PEM `file` of the CAs whose client certificates are accepted: checks need one, and so does the admin API but for /healthz, /readyz and /metrics")
	fs.BoolVar(&c.AllowInsecureAdmin, "allow-insecure-admin", false, "serve the admin API on an address other than loopback without TLS, or with the admin token keygate generated, on a network you trust such as a container's (the Docker image sets it)")
}

// checkSecurity checks the TLS flags, and refuses an admin API exposed
// beyond loopback without TLS, or with the token keygate generated (one
// the operator has not chosen), unless c.AllowInsecureAdmin.
func checkSecurity(c Config) error {
	switch {
	case (c.TLS.Cert == "") != (c.TLS.Key == ""):
		return usagef("--tls-cert and --tls-key go together")
	case c.TLS.ClientCA != "" && c.TLS.Cert == "":
		return usagef("--tls-client-ca needs --tls-cert and --tls-key")
	case c.AllowInsecureAdmin || isLoopback(c.AdminAddr):
		return nil
	}
	var why string
	switch {
	case c.TLS.Cert == "":
		why = "without TLS"
	case c.AdminToken == "" && c.TokenFile == "":
		why = "with the admin token keygate generated"
	default:
		return nil
	}
	return fmt.Errorf("refusing to serve the admin API on %s, which is not a loopback address, %s: "+
		"give --tls-cert, --tls-key and a token of your own (KEYGATE_ADMIN_TOKEN or --admin-token-file), "+
		"or bind --admin-addr to 127.0.0.1, or pass --allow-insecure-admin if only trusted peers can reach it", c.AdminAddr, why)
}

// isLoopback reports whether addr binds to loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// secure puts TLS on the listeners when configured, keeps the admin tokens
// in step with their file, and warns about secret files other users can
// read. Open calls it once everything is bound.
func (m *Main) secure() error {
	m.warnOpenFiles()
	adminHandler := m.tokens.handler(m.adminSrv.Handler)
	if m.cfg.TLS.Cert != "" {
		certs, err := newCertStore(m.cfg.TLS, m.log)
		if err != nil {
			return err
		}
		m.grpcLis = tls.NewListener(m.grpcLis, certs.config([]string{"h2"}, tls.RequireAndVerifyClientCert))
		m.adminLis = tls.NewListener(m.adminLis, certs.config([]string{"h2", "http/1.1"}, tls.VerifyClientCertIfGiven))
		if m.httpLis != nil {
			m.httpLis = tls.NewListener(m.httpLis, certs.config([]string{"http/1.1"}, tls.RequireAndVerifyClientCert))
		}
		m.adminSrv.Protocols.SetHTTP2(true)
		if m.cfg.TLS.ClientCA != "" {
			adminHandler = requireClientCert(adminHandler)
		}
	}
	m.adminSrv.Handler = adminHandler
	return nil
}

// requireClientCert refuses requests to the admin API, JSON or gRPC, that
// came without a verified client certificate. Probes and metrics stay open
// to those that cannot present one.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz", r.URL.Path == "/readyz", r.URL.Path == "/metrics":
		case r.TLS == nil || len(r.TLS.VerifiedChains) == 0:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthenticated","message":"a client certificate signed by a CA of --tls-client-ca is required"}}`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// warnOpenFiles warns when the database or the admin token file may be
// read or written by users other than their owner.
func (m *Main) warnOpenFiles() {
	var files []string
	if m.cfg.Store != storeEtcd {
		files = append(files, m.cfg.DBPath)
	}
	if m.tokens.path != "" {
		files = append(files, m.tokens.path)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil && fi.Mode().Perm()&0o077 != 0 {
			m.log.Warn("other users may read this file, which holds secrets or their hashes: chmod 600 it", "file", f, "mode", fmt.Sprintf("%#o", fi.Mode().Perm()))
		}
	}
}
