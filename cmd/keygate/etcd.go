package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keygate/keygate/store/etcd"
)

// EtcdConfig says how to reach the etcd cluster of --store etcd.
type EtcdConfig struct {
	Endpoints              []string
	Prefix                 string
	CACert, Cert, Key      string // PEM files; all empty and http:// endpoints: no TLS
	Username, PasswordFile string // etcd authentication; the password may come from KEYGATE_ETCD_PASSWORD
	Password               string
	DialTimeout            time.Duration
	RequestTimeout         time.Duration
	MaxStaleness           time.Duration
}

// etcdFlags are the flags that reach an etcd cluster.
type etcdFlags struct {
	endpoints string
	cfg       *EtcdConfig
}

// addEtcdFlags defines the flags that fill e on fs.
func addEtcdFlags(fs *flagSet, e *EtcdConfig) *etcdFlags {
	fs.StringVar(&e.Prefix, "etcd-prefix", "/keygate/", "etcd key `prefix` of this keygate's data; deployments can share a cluster")
	fs.StringVar(&e.CACert, "etcd-cacert", "", "PEM `file` of the CA that signed the etcd servers' certificates")
	fs.StringVar(&e.Cert, "etcd-cert", "", "PEM `file` of the client certificate for etcd")
	fs.StringVar(&e.Key, "etcd-key", "", "PEM `file` of the client certificate's key")
	fs.StringVar(&e.Username, "etcd-username", "", "etcd user `name`, for etcd authentication")
	fs.StringVar(&e.PasswordFile, "etcd-password-file", "", "`file` holding the etcd user's password; KEYGATE_ETCD_PASSWORD takes precedence")
	fs.DurationVar(&e.DialTimeout, "etcd-dial-timeout", 5*time.Second, "how long to wait for a first connection to etcd")
	fs.DurationVar(&e.RequestTimeout, "etcd-request-timeout", 5*time.Second, "how long one write may wait for etcd before failing (HTTP 503)")
	f := &etcdFlags{cfg: e}
	fs.StringVar(&f.endpoints, "etcd-endpoints", "", "comma-separated etcd client `URLs`")
	return f
}

// apply completes the EtcdConfig: endpoints, password. It fails without
// endpoints.
func (f *etcdFlags) apply() error {
	for _, ep := range strings.Split(f.endpoints, ",") {
		if ep = strings.TrimSpace(ep); ep != "" {
			f.cfg.Endpoints = append(f.cfg.Endpoints, ep)
		}
	}
	if len(f.cfg.Endpoints) == 0 {
		return usagef("--etcd-endpoints is needed")
	}
	f.cfg.Password = os.Getenv("KEYGATE_ETCD_PASSWORD")
	return nil
}

// storeFlags are the flags that choose and reach a store.
type storeFlags struct{ etcd *etcdFlags }

// addStoreFlags defines --store, --max-staleness and the etcd flags on fs.
func addStoreFlags(fs *flagSet, c *Config) *storeFlags {
	fs.StringVar(&c.Store, "store", storeBolt, "`kind` of store: bolt (one file, one process) or etcd (many replicas)")
	fs.DurationVar(&c.Etcd.MaxStaleness, "max-staleness", 30*time.Second, "with --store etcd: how long a replica may go without confirming it has every change before checks answer UNAVAILABLE and /readyz fails")
	return &storeFlags{addEtcdFlags(fs, &c.Etcd)}
}

// apply checks the store flags.
func (f *storeFlags) apply(c *Config) error {
	switch c.Store {
	case storeBolt:
		return nil
	case storeEtcd:
		if c.Etcd.MaxStaleness <= 0 {
			return usagef("--max-staleness must be positive")
		}
		return f.etcd.apply()
	}
	return usagef("--store is %s or %s, not %q", storeBolt, storeEtcd, c.Store)
}

// etcdClient connects to the cluster e describes.
func etcdClient(e EtcdConfig) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   e.Endpoints,
		DialTimeout: e.DialTimeout,
		// Notice a dead connection within seconds, not minutes.
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		Username:             e.Username,
		Password:             e.Password,
		Logger:               zap.NewNop(), // the store logs what matters, through slog
		DialOptions:          etcd.ReconnectOptions(),
	}
	if cfg.Username != "" && cfg.Password == "" && e.PasswordFile != "" {
		p, err := readToken(e.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("etcd password: %w", err)
		}
		cfg.Password = p
	}
	if e.CACert != "" || e.Cert != "" || e.Key != "" || strings.HasPrefix(e.Endpoints[0], "https://") {
		tlsCfg, err := transport.TLSInfo{CertFile: e.Cert, KeyFile: e.Key, TrustedCAFile: e.CACert}.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
		cfg.TLS = tlsCfg
	}
	return clientv3.New(cfg)
}

// openEtcd connects to etcd and loads the store.
func openEtcd(ctx context.Context, c Config, log *slog.Logger) (*etcd.Store, error) {
	cli, err := etcdClient(c.Etcd)
	if err != nil {
		return nil, err
	}
	// Each read of the first load is bounded by RequestTimeout, not the
	// whole load: a large prefix takes seconds to read.
	s, err := etcd.Open(ctx, cli, c.Etcd.Prefix, etcd.Options{
		MaxStaleness:   c.Etcd.MaxStaleness,
		FlushInterval:  c.FlushInterval,
		RequestTimeout: c.Etcd.RequestTimeout,
		Logger:         log,
	})
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(c.Etcd.Endpoints, ","), err)
	}
	return s, nil
}
