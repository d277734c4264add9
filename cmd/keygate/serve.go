package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// Config is everything "keygate serve" can be told.
type Config struct {
	DBPath          string
	GRPCAddr        string
	AdminAddr       string
	AdminToken      string // from KEYGATE_ADMIN_TOKEN; empty means use TokenFile
	TokenFile       string // empty means DBPath + ".admin-token"
	FlushInterval   time.Duration
	ShutdownTimeout time.Duration
	HTTPAddr        string      // the HTTP check endpoint; empty: none
	HTTPPathPrefix  string      // paths of the HTTP check endpoint
	Defaults        authz.Route // what a route leaves unset; zero fields: authz.DefaultRoute
	Store           string      // storeBolt (or empty) or storeEtcd
	Etcd            EtcdConfig  // with storeEtcd
	// TLS of every listener; none when empty.
	TLS TLSFiles
	// AllowInsecureAdmin lets the admin API listen beyond loopback without
	// TLS or with the token keygate generated.
	AllowInsecureAdmin bool
}

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", "keygate serve [flags]\n\nRuns Envoy's ext_authz Check service (gRPC) and the admin API (HTTP and gRPC)\non an embedded bbolt database. Stops cleanly on SIGTERM or SIGINT.", stderr)
	var c Config
	fs.StringVar(&c.DBPath, "db", envOr("KEYGATE_DB", "keygate.db"), "bbolt database `file`, created if missing (env KEYGATE_DB)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", envOr("KEYGATE_GRPC_ADDR", ":9191"), "`address` of the Check service, gRPC health and reflection (env KEYGATE_GRPC_ADDR)")
	fs.StringVar(&c.AdminAddr, "admin-addr", envOr("KEYGATE_ADMIN_ADDR", "127.0.0.1:9192"), "`address` of the admin API, /healthz, /readyz and /metrics (env KEYGATE_ADMIN_ADDR)")
	fs.StringVar(&c.TokenFile, "admin-token-file", envOr("KEYGATE_ADMIN_TOKEN_FILE", ""), "`file` holding the admin token, generated if missing (default <db>.admin-token; env KEYGATE_ADMIN_TOKEN_FILE; KEYGATE_ADMIN_TOKEN takes precedence)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", 10*time.Second, "how often keys' last-used times are written to the database")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may take to finish on shutdown")
	checks := addCheckFlags(fs, &c)
	stores := addStoreFlags(fs, &c)
	addSecurityFlags(fs, &c)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if err := checks.apply(&c); err != nil {
		return err
	}
	if err := stores.apply(&c); err != nil {
		return err
	}
	c.AdminToken = envOr("KEYGATE_ADMIN_TOKEN", "")
	log := slog.New(slog.NewTextHandler(stderr, nil))
	slog.SetDefault(log) // packages that log through slog's default (admin) log as serve does

	m, err := Open(c, log)
	if err != nil {
		return err
	}
	if p := tuneGC(); p > 0 {
		log.Info("GC set to keep the heap near the live heap", "gc_percent", p)
	}
	return m.Run(ctx)
}

// Main is a running keygate server: its store, listeners and servers. Tests
// use it to run keygate in-process.
type Main struct {
	cfg   Config
	log   *slog.Logger
	store servedStore

	grpcLis, adminLis net.Listener
	grpcSrv           *grpc.Server
	adminSrv          *http.Server
	httpLis           net.Listener // nil without an HTTP check endpoint
	httpSrv           *http.Server
	adminGRPC         *grpc.Server
	health            *health.Server
	ready             atomic.Bool
	tokens            *tokenWatch
}

// Open opens the store, loads or creates the admin token and binds both
// listeners. Nothing is served until Run.
func Open(c Config, log *slog.Logger) (_ *Main, err error) {
	if err := checkSecurity(c); err != nil {
		return nil, err
	}
	m := &Main{cfg: c, log: log}
	defer func() {
		if err != nil {
			m.closeListeners()
			if m.store != nil {
				m.store.Close()
			}
		}
	}()
	token := c.AdminToken
	if token == "" && c.Store == storeEtcd {
		if token, err = givenToken(c.TokenFile); err != nil {
			return nil, err
		}
	}
	if m.store, err = openStore(context.Background(), c, log); err != nil {
		return nil, err
	}
	if token == "" {
		path := c.TokenFile
		if path == "" {
			path = c.DBPath + ".admin-token"
		}
		var created bool
		token, created, err = loadOrCreateToken(path)
		if err != nil {
			return nil, err
		}
		if created {
			log.Info("generated a new admin token; the CLI on this host reads it from there", "file", path)
		} else {
			log.Info("admin token loaded", "file", path)
		}
	}
	m.tokens = watchTokens(c, token, log)
	if m.grpcLis, err = net.Listen("tcp", c.GRPCAddr); err != nil {
		return nil, fmt.Errorf("check service: %w", err)
	}
	if m.adminLis, err = net.Listen("tcp", c.AdminAddr); err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(m.store.Collectors()...)

	m.grpcSrv = grpc.NewServer(checkServerOptions()...)
	checker := authz.NewAuthorizer(m.store, nil).WithDefaults(c.Defaults)
	if err = m.openHTTP(checker, reg); err != nil {
		return nil, err
	}
	envoy.NewServer(checker, reg).RegisterWire(m.grpcSrv)
	m.health = health.NewServer()
	m.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	m.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(m.grpcSrv, m.health)
	reflection.Register(m.grpcSrv)

	svc := admin.NewService(m.store, admin.ServiceOptions{Logger: log})
	m.adminGRPC = grpc.NewServer(admin.GRPCServerOptions(m.tokens.set)...)
	adminv1.RegisterAdminServer(m.adminGRPC, svc)
	m.adminSrv = &http.Server{
		Handler:           m.adminHandler(admin.NewHandler(svc, m.tokens.set), reg),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         new(http.Protocols),
	}
	m.adminSrv.Protocols.SetHTTP1(true)
	m.adminSrv.Protocols.SetUnencryptedHTTP2(true) // for admin gRPC clients
	if err = m.secure(); err != nil {
		return nil, err
	}
	return m, nil
}

// adminHandler routes the admin listener: gRPC, the unauthenticated probes
// and metrics, and the authenticated JSON API.
func (m *Main) adminHandler(api http.Handler, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		if err := m.store.Ready(); err != nil {
			http.Error(w, "not ready: "+authz.Message(err), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/v1/", api)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			m.adminGRPC.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// GRPCAddr and AdminAddr are the bound addresses, useful with port 0.
func (m *Main) GRPCAddr() string  { return m.grpcLis.Addr().String() }
func (m *Main) AdminAddr() string { return m.adminLis.Addr().String() }

// Run serves until ctx is done, then shuts down gracefully: it stops taking
// new requests, lets in-flight ones finish (up to ShutdownTimeout), flushes
// last-used times and closes the database.
func (m *Main) Run(ctx context.Context) error {
	errc := make(chan error, 3)
	go func() { errc <- m.grpcSrv.Serve(m.grpcLis) }()
	go func() { errc <- m.adminSrv.Serve(m.adminLis) }()
	if m.httpSrv != nil {
		go func() { errc <- m.httpSrv.Serve(m.httpLis) }()
	}
	m.health.Resume()
	m.ready.Store(true)
	go m.followReadiness(ctx)
	where := []any{"db", m.cfg.DBPath}
	if m.cfg.Store == storeEtcd {
		where = []any{"etcd", strings.Join(m.cfg.Etcd.Endpoints, ","), "prefix", m.cfg.Etcd.Prefix}
	}
	m.log.Info("keygate serving", append([]any{"check", m.GRPCAddr(), "http", m.HTTPAddr(), "admin", m.AdminAddr()}, where...)...)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	m.log.Info("shutting down")
	m.ready.Store(false)
	m.health.Shutdown()
	if shutErr := m.shutdown(); err == nil {
		err = shutErr
	}
	if err != nil {
		m.log.Error("stopped with an error", "err", err)
	} else {
		m.log.Info("stopped")
	}
	return err
}

func (m *Main) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		m.grpcSrv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		m.grpcSrv.Stop()
	}
	httpErr := m.adminSrv.Shutdown(ctx)
	m.adminGRPC.Stop()
	if errors.Is(httpErr, context.DeadlineExceeded) {
		m.adminSrv.Close()
		httpErr = nil
	}
	return errors.Join(httpErr, m.stopHTTP(ctx), m.store.Close())
}

func (m *Main) closeListeners() {
	for _, l := range []net.Listener{m.grpcLis, m.adminLis, m.httpLis} {
		if l != nil {
			l.Close()
		}
	}
}
