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

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c Config
	fs, apply := serveFlags(&c, stdout)
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	if err := wantArgs("serve", pos); err != nil {
		return err
	}
	if err := apply(); err != nil {
		return err
	}
	if fs.Lookup("print-config").Value.String() == "true" {
		printConfig(stdout, fs)
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	slog.SetDefault(log) // packages that log through slog's default (admin) log as serve does
	warnUnknownEnv(log)

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

// Open binds the listeners, opens the store, loads or creates the admin
// token and builds the servers. Nothing is served until Run. A listener
// that cannot be bound fails Open before the store or the token file is
// created.
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
	token, err := c.givenToken()
	if err != nil {
		return nil, err
	}
	if err = m.listen(); err != nil {
		return nil, err
	}
	if m.store, err = openStore(context.Background(), c, log); err != nil {
		return nil, err
	}
	if token == "" {
		if token, err = m.generatedToken(); err != nil {
			return nil, err
		}
	}
	m.tokens = watchTokens(c, token, log)
	reg := m.registry()
	m.buildCheckServers(reg)
	m.buildAdminServer(reg)
	if err = m.secure(); err != nil {
		return nil, err
	}
	return m, nil
}

// errTokenRequired says why an etcd-backed keygate will not make its own
// admin token: every replica must share one.
var errTokenRequired = errors.New("with --store etcd the admin token must be given, in KEYGATE_ADMIN_TOKEN or a file named by --admin-token-file, and be the same on every replica")

// givenToken is the admin token given in the environment, or with --store
// etcd in --admin-token-file; "" when keygate is to load or make its own.
func (c Config) givenToken() (string, error) {
	if c.AdminToken != "" || c.Store != storeEtcd {
		return c.AdminToken, nil
	}
	if c.TokenFile == "" {
		return "", errTokenRequired
	}
	return readToken(c.TokenFile)
}

// listen binds the Check service, the admin API and the HTTP check
// endpoint when there is one.
func (m *Main) listen() (err error) {
	if m.grpcLis, err = net.Listen("tcp", m.cfg.GRPCAddr); err != nil {
		return fmt.Errorf("check service: %w", err)
	}
	if m.adminLis, err = net.Listen("tcp", m.cfg.AdminAddr); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	if m.cfg.HTTPAddr != "" {
		if m.httpLis, err = net.Listen("tcp", m.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("HTTP check endpoint: %w", err)
		}
	}
	return nil
}

// generatedToken loads the admin token file, or creates it with a new
// token.
func (m *Main) generatedToken() (string, error) {
	path := tokenFileOf(m.cfg)
	token, created, err := loadOrCreateToken(path)
	if err != nil {
		return "", err
	}
	if created {
		m.log.Info("generated a new admin token; the CLI on this host reads it from there", "file", path)
	} else {
		m.log.Info("admin token loaded", "file", path)
	}
	return token, nil
}

// registry holds the process's, the Go runtime's and the store's metrics.
func (m *Main) registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(m.store.Collectors()...)
	return reg
}

// buildCheckServers builds the gRPC Check service, with health and
// reflection, and the HTTP check endpoint, counting checks on reg.
func (m *Main) buildCheckServers(reg *prometheus.Registry) {
	checker := authz.NewAuthorizer(m.store, nil).WithDefaults(m.cfg.Defaults)
	m.grpcSrv = grpc.NewServer(checkServerOptions()...)
	envoy.NewServer(checker, reg).RegisterWire(m.grpcSrv)
	m.health = health.NewServer()
	m.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	m.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(m.grpcSrv, m.health)
	reflection.Register(m.grpcSrv)
	m.buildHTTP(checker, reg)
}

// buildAdminServer builds the admin API, JSON and gRPC on one listener.
func (m *Main) buildAdminServer(reg *prometheus.Registry) {
	svc := admin.NewService(m.store, admin.ServiceOptions{Logger: m.log})
	m.adminGRPC = grpc.NewServer(admin.GRPCServerOptions(m.tokens.set)...)
	adminv1.RegisterAdminServer(m.adminGRPC, svc)
	m.adminSrv = &http.Server{
		Handler:           m.adminHandler(admin.NewHandler(svc, m.tokens.set), reg),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         new(http.Protocols),
	}
	m.adminSrv.Protocols.SetHTTP1(true)
	m.adminSrv.Protocols.SetUnencryptedHTTP2(true) // for admin gRPC clients
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
