package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/authz"
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

const serveSynopsis = `keygate serve [flags]

Runs Envoy's ext_authz Check service (gRPC), the optional HTTP check
endpoint and the admin API (HTTP and gRPC) on a store: a bbolt file
(--store bolt, the default) or an etcd cluster shared by many replicas
(--store etcd). Stops cleanly on SIGTERM or SIGINT.

Every flag can also be set in the environment variable named after it, or
in the YAML file --config names; flags win over the environment, the
environment over the file. Secrets are read from the environment only:`

// secretEnv are the settings read from the environment only, because
// command lines show in ps and config files get copied around.
var secretEnv = []struct{ name, help string }{
	{"KEYGATE_ADMIN_TOKEN", "the admin token itself; takes precedence over --admin-token-file"},
	{"KEYGATE_ETCD_PASSWORD", "the etcd user's password; takes precedence over --etcd-password-file"},
}

// serveFlags declares every setting of serve, filling c once parsed and
// checked by the returned function. --help prints the usage to help.
func serveFlags(c *Config, help io.Writer) (*flagSet, func() error) {
	synopsis := serveSynopsis
	for _, s := range secretEnv {
		synopsis += fmt.Sprintf("\n  %-22s %s", s.name, s.help)
	}
	fs := newFlagSet("serve", synopsis, help)
	fs.StringVar(&c.DBPath, "db", "keygate.db", "bbolt database `file`, created if missing")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":9191", "`address` of the Check service, gRPC health and reflection")
	fs.StringVar(&c.AdminAddr, "admin-addr", "127.0.0.1:9192", "`address` of the admin API (JSON and gRPC), /healthz, /readyz and /metrics")
	fs.StringVar(&c.TokenFile, "admin-token-file", "", "`file` of admin tokens, one a line, generated (mode 0600) if missing; when empty, the --db file name + .admin-token; KEYGATE_ADMIN_TOKEN takes precedence")
	fs.DurationVar(&c.FlushInterval, "flush-interval", 10*time.Second, "how often keys' last-used times are written to the store")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may take to finish on SIGTERM")
	checks := addCheckFlags(fs, c)
	stores := addStoreFlags(fs, c)
	addSecurityFlags(fs, c)
	fs.withConfigFile()
	fs.Bool("print-config", false, "print the effective configuration, secrets redacted, and exit")
	fs.bindEnvAll()
	return fs, func() error {
		if err := checks.apply(c); err != nil {
			return err
		}
		if err := stores.apply(c); err != nil {
			return err
		}
		c.AdminToken = os.Getenv("KEYGATE_ADMIN_TOKEN")
		return nil
	}
}

// printConfig writes serve's effective settings as a YAML file that
// --config would read, and which secrets are set, to w.
func printConfig(w io.Writer, fs *flagSet) {
	fmt.Fprintln(w, "# keygate serve: the effective configuration (flags, then environment, then --config file, then defaults)")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" || f.Name == "print-config" {
			return
		}
		v := f.Value.String()
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
			q, _ := json.Marshal(v) // a YAML string, quoted like JSON
			v = string(q)
		}
		fmt.Fprintf(w, "%s: %s\n", f.Name, v)
	})
	for _, s := range secretEnv {
		state := "not set"
		if os.Getenv(s.name) != "" {
			state = "set (redacted)"
		}
		fmt.Fprintf(w, "# %s: %s\n", s.name, state)
	}
}

// knownEnv are the environment variables some keygate command reads.
// Those of import and migrate are serve's too.
func knownEnv() map[string]bool {
	known := map[string]bool{"KEYGATE_CPUPROFILE": true}
	for _, s := range secretEnv {
		known[s.name] = true
	}
	serve, _ := serveFlags(new(Config), io.Discard)
	cli := newFlagSet("cli", "", io.Discard)
	new(cliFlags).register(cli)
	for _, fs := range []*flagSet{serve, cli} {
		for _, env := range fs.env {
			known[env] = true
		}
	}
	return known
}

// warnUnknownEnv warns about each KEYGATE_ variable that no command reads,
// most likely a misspelt one. Its value, which may be a secret, is not
// logged.
func warnUnknownEnv(log *slog.Logger) {
	known := knownEnv()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] {
			log.Warn("unknown environment variable ignored: is it misspelt?", "name", name)
		}
	}
}
