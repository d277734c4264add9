// Command run is keygate's load benchmark. It builds a set of keys, loads
// them into keygate (with keygate import), into keygate on etcd (imported,
// then copied with keygate migrate into a one-member etcd of its own) and
// into OPA-Envoy (as a data document), and measures each of them and a
// do-nothing grpc-go ext_authz server with the closed-loop load generator
// of package load. Servers run on CPU 0; run itself, the load generator,
// belongs on CPU 1 (make bench starts it with taskset), and so does etcd. Every figure is reported with its ratio to the
// do-nothing server measured in the same run.
//
//	go run ./bench/run -bin bin -keys 1000,100000,1000000 -md docs/benchmarks.md
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/bench/load"
)

// serverCPU is where servers run; the load generator runs elsewhere.
const serverCPU = "0"

// Server names.
const (
	nopServer         = "nop"
	keygateServer     = "keygate"
	keygateEtcdServer = "keygate-etcd" // keygate serve --store etcd, on a one-member etcd
	opaServer         = "opa-envoy"
)

type options struct {
	bin, work, md, svg string
	keys, inflight     []int
	servers            []string
	warmup, window     time.Duration
	requests, rounds   int
	smoke, profile     bool
	writes             bool
	readyTimeout       time.Duration
	opaDir             string
}

// row is one measurement.
type row struct {
	Server   string `json:"server"`
	Keys     int    `json:"keys"`
	InFlight int    `json:"in_flight"`
	load.Result
	StartupSeconds float64 `json:"startup_seconds"`
	IdleRSS        int64   `json:"idle_rss_bytes"` // after start-up, before load
	Rounds         int     `json:"rounds"`         // measurements the figures are medians of
}

// report is a whole run.
type report struct {
	Date        time.Time      `json:"date"`
	Machine     string         `json:"machine"`
	Command     string         `json:"command"`
	Warmup      string         `json:"warmup"`
	Window      string         `json:"window"`
	Rounds      int            `json:"rounds"`
	Rows        []row          `json:"rows"`
	ImportRates map[int]string `json:"import"`    // keys -> keygate import's own summary
	EtcdLoads   map[int]string `json:"etcd_load"` // keys -> keygate migrate's summary, timed
	Writes      []writeRow     `json:"writes"`
}

func main() {
	var o options
	var keys, inflight, servers string
	flag.StringVar(&o.bin, "bin", "bin", "`dir` holding keygate, nop and opa-envoy")
	flag.StringVar(&o.work, "work", "bench/out", "`dir` for data sets, databases, logs and results.json")
	flag.StringVar(&o.md, "md", "", "markdown `file` whose results section to rewrite (docs/benchmarks.md); empty: none")
	flag.StringVar(&o.svg, "svg", "", "chart `file` to write (docs/benchmarks.svg); empty: none")
	flag.StringVar(&keys, "keys", "1000,100000,1000000", "comma-separated key counts")
	flag.StringVar(&inflight, "inflight", "16,64", "comma-separated numbers of Checks in flight")
	flag.StringVar(&servers, "servers", strings.Join([]string{nopServer, keygateServer, keygateEtcdServer, opaServer}, ","), "comma-separated servers to measure")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up before each window")
	flag.DurationVar(&o.window, "window", 10*time.Second, "measuring window")
	flag.IntVar(&o.requests, "requests", 1000, "distinct pre-encoded requests")
	flag.IntVar(&o.rounds, "rounds", 3, "measurements of each server, taken in turn; figures are their medians")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 5*time.Minute, "how long a server may take to start")
	flag.StringVar(&o.opaDir, "opa", "bench/opa", "`dir` holding policy.rego")
	flag.BoolVar(&o.profile, "profile", false, "write CPU profiles of keygate and the do-nothing server to the work dir (<server>-<keys>.pprof)")
	flag.BoolVar(&o.writes, "writes", true, "also measure writes through the admin API from 32 clients")
	flag.BoolVar(&o.smoke, "smoke", false, "a few seconds on small key counts, failing if any server answers wrongly (for CI)")
	flag.Parse()
	if o.smoke {
		keys, inflight, o.warmup, o.window, o.rounds = "1000", "16", 300*time.Millisecond, time.Second, 1
	}
	var err error
	if o.keys, err = ints(keys); err == nil {
		o.inflight, err = ints(inflight)
	}
	if err != nil {
		log.Fatal(err)
	}
	o.servers = strings.Split(servers, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatal(err)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.work, 0o755); err != nil {
		return err
	}
	rep := report{
		Date:        time.Now().UTC(),
		Machine:     machine(),
		Command:     commandLine(os.Args[1:]),
		Warmup:      o.warmup.String(),
		Window:      o.window.String(),
		Rounds:      o.rounds,
		ImportRates: map[int]string{},
		EtcdLoads:   map[int]string{},
	}
	for _, n := range o.keys {
		log.Printf("%d keys: generating", n)
		ds, err := newDataSet(o.work, n, o.requests)
		if err != nil {
			return err
		}
		rows, err := measureAll(ctx, o, ds, &rep)
		if err != nil {
			return err
		}
		rep.Rows = append(rep.Rows, rows...)
	}
	if o.writes {
		var err error
		if rep.Writes, err = measureWrites(ctx, o); err != nil {
			return err
		}
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(o.work, "results.json"), b, 0o644); err != nil {
		return err
	}
	fmt.Print(table(rep))
	if o.md != "" {
		if err := writeMarkdown(o.md, rep); err != nil {
			return err
		}
	}
	if o.svg != "" {
		if err := os.WriteFile(o.svg, []byte(chart(rep)), 0o644); err != nil {
			return err
		}
	}
	if o.smoke {
		return checkSmoke(rep)
	}
	return nil
}

// measureAll starts every server on data set ds, then measures them in
// turn, round after round, so that a change in the machine's load falls on
// all of them alike. Each figure is the median of the rounds.
func measureAll(ctx context.Context, o options, ds *dataSet, rep *report) ([]row, error) {
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, name := range o.servers {
		s, err := start(ctx, o, ds, name, rep)
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
	}
	var rows []row
	for _, n := range o.inflight {
		rounds := make([][]row, len(servers))
		for r := 0; r < o.rounds; r++ {
			for i, s := range servers {
				res, err := load.Run(ctx, load.Config{
					Addr: s.addr, Requests: ds.requests, InFlight: n,
					Warmup: o.warmup, Window: o.window, ServerPID: s.pid(),
				})
				if err != nil {
					return nil, fmt.Errorf("%s, %d keys, %d in flight: %w", s.name, ds.keys, n, err)
				}
				log.Printf("%d keys, %s, %d in flight, round %d: %.0f Checks/s, %.1f µs CPU/Check, p99 %.0f µs, %.0f%% allowed",
					ds.keys, s.name, n, r+1, res.PerSecond, res.ServerCPU, res.P99, 100*float64(res.Allowed)/float64(res.Checks))
				rounds[i] = append(rounds[i], row{Server: s.name, Keys: ds.keys, InFlight: n, Result: res, StartupSeconds: s.startup.Seconds(), IdleRSS: s.idleRSS})
			}
		}
		for _, rs := range rounds {
			rows = append(rows, median(rs))
		}
	}
	return rows, nil
}

// start starts one server on data set ds.
func start(ctx context.Context, o options, ds *dataSet, name string, rep *report) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(o.work, fmt.Sprintf("%s-%d.log", name, ds.keys))
	var argv, env []string
	var backend *server
	switch name {
	case nopServer:
		bin, err := binary(o.bin, "nop")
		if err != nil {
			return nil, err
		}
		argv = []string{bin, "-addr", addr}
		if o.profile {
			argv = append(argv, "-cpuprofile", profilePath(o, name, ds.keys))
		}
	case keygateServer, keygateEtcdServer:
		bin, err := binary(o.bin, "keygate")
		if err != nil {
			return nil, err
		}
		db := filepath.Join(o.work, fmt.Sprintf("%s-%d.db", name, ds.keys))
		if err := removeDB(db); err != nil {
			return nil, err
		}
		out, err := exec.CommandContext(ctx, "taskset", "-c", serverCPU, bin, "import", "--db", db, ds.importFile).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("keygate import: %w: %s", err, out)
		}
		if name == keygateServer {
			rep.ImportRates[ds.keys] = strings.TrimSpace(string(out))
		}
		log.Printf("%d keys: %s", ds.keys, out)
		admin, err := freeAddr()
		if err != nil {
			return nil, err
		}
		argv = []string{bin, "serve", "--grpc-addr", addr, "--admin-addr", admin, "--flush-interval", "1m"}
		if name == keygateServer {
			argv = append(argv, "--db", db)
			break
		}
		var endpoint string
		if backend, endpoint, err = etcdWith(ctx, o, ds.keys, bin, db, rep); err != nil {
			return nil, err
		}
		argv = append(argv, "--store", "etcd", "--etcd-endpoints", endpoint, "--etcd-prefix", etcdPrefix)
		env = append(env, "KEYGATE_ADMIN_TOKEN="+rand.Text())
	case opaServer:
		bin, err := binary(o.bin, "opa-envoy")
		if err != nil {
			return nil, err
		}
		cfg := filepath.Join(o.work, "opa-config.json")
		if err := opaConfig(cfg, addr); err != nil {
			return nil, err
		}
		httpAddr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		argv = []string{bin, "run", "--server", "--addr", httpAddr, "--skip-version-check", "--log-level", "error",
			"--config-file", cfg, filepath.Join(o.opaDir, "policy.rego"), ds.opaFile}
	default:
		return nil, fmt.Errorf("unknown server %q", name)
	}

	if o.profile && (name == keygateServer || name == keygateEtcdServer) {
		env = append(env, "KEYGATE_CPUPROFILE="+profilePath(o, name, ds.keys))
	}
	log.Printf("%d keys: starting %s", ds.keys, name)
	s, err := startServer(ctx, name, addr, logPath, ds.probe, o.readyTimeout, env, argv...)
	if err != nil {
		if backend != nil {
			backend.stop()
		}
		return nil, err
	}
	s.backend = backend
	if s.idleRSS, err = load.RSS(s.pid()); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// median returns a row whose every figure is the median of rows'.
func median(rows []row) row {
	m := rows[0]
	pick := func(f func(*row) *float64) {
		vs := make([]float64, len(rows))
		for i := range rows {
			vs[i] = *f(&rows[i])
		}
		slices.Sort(vs)
		*f(&m) = vs[len(vs)/2]
	}
	pick(func(r *row) *float64 { return &r.PerSecond })
	pick(func(r *row) *float64 { return &r.P50 })
	pick(func(r *row) *float64 { return &r.P90 })
	pick(func(r *row) *float64 { return &r.P99 })
	pick(func(r *row) *float64 { return &r.ServerCPU })
	pick(func(r *row) *float64 { return &r.ServerCores })
	pick(func(r *row) *float64 { return &r.LoadCores })
	pick(func(r *row) *float64 { return &r.OtherCores })
	m.Checks, m.Allowed = 0, 0
	for _, r := range rows {
		m.Checks += r.Checks
		m.Allowed += r.Allowed
		m.RSS = max(m.RSS, r.RSS)
	}
	m.Rounds = len(rows)
	return m
}

func profilePath(o options, server string, keys int) string {
	p, _ := filepath.Abs(filepath.Join(o.work, fmt.Sprintf("%s-%d.pprof", server, keys)))
	return p
}

func removeDB(path string) error {
	for _, p := range []string{path, path + ".admin-token"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// checkSmoke fails unless every server answered as it should: the
// do-nothing server allows everything, the others exactly the requests
// with a stored key.
func checkSmoke(rep report) error {
	for _, r := range rep.Rows {
		share := float64(r.Allowed) / float64(r.Checks)
		want := validShare
		if r.Server == nopServer {
			want = 1
		}
		if share < want-0.02 || share > want+0.02 {
			return fmt.Errorf("smoke: %s allowed %.1f%% of Checks, want %.0f%%", r.Server, 100*share, 100*want)
		}
	}
	for _, w := range rep.Writes {
		if w.Writes == 0 {
			return fmt.Errorf("smoke: no %s write finished", w.Op)
		}
	}
	fmt.Printf("smoke: %d measurements, every server answered as expected; %d kinds of writes\n", len(rep.Rows), len(rep.Writes))
	return nil
}

// machine describes the CPU, kernel and Go.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	goVersion, _ := exec.Command("go", "env", "GOVERSION").Output()
	return fmt.Sprintf("%s, %d CPUs, Linux %s, %s", model, numCPU(), strings.TrimSpace(string(kernel)), strings.TrimSpace(string(goVersion)))
}

// commandLine is the command that reproduces this run, with paths inside the
// working directory made relative, so that the page names no one machine's
// folders.
func commandLine(args []string) string {
	wd, _ := os.Getwd()
	words := []string{"go run ./bench/run"}
	for _, a := range args {
		if rel, err := filepath.Rel(wd, a); wd != "" && filepath.IsAbs(a) && err == nil && !strings.HasPrefix(rel, "..") {
			a = rel
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}
