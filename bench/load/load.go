// Package load is the benchmark's closed-loop gRPC load generator for Envoy
// ext_authz servers. A fixed number of calls are in flight; each sends one
// of a set of pre-encoded CheckRequests and sends the next as soon as the
// answer arrives. After a warm-up it measures for a bounded window, then
// stops. It writes HTTP/2 frames itself (see client), so that it costs
// less per Check than the servers it measures.
//
// Besides Checks per second and latency it reads, from /proc, the server's
// CPU time per Check (the figure that survives a noisy machine), its
// resident memory, and the CPU that every other process used meanwhile.
package load

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// CheckMethod is the full name of Envoy's ext_authz v3 Check.
const CheckMethod = "/envoy.service.auth.v3.Authorization/Check"

// Config is one measurement.
type Config struct {
	Addr      string   // the server, host:port, without TLS
	Requests  [][]byte // encoded CheckRequests, sent round-robin
	InFlight  int
	Warmup    time.Duration
	Window    time.Duration
	ServerPID int // whose CPU and memory to read
}

// Result is what one measurement saw. Durations are wall-clock latencies;
// CPU figures are in microseconds.
type Result struct {
	Checks        int     `json:"checks"`
	PerSecond     float64 `json:"checks_per_second"`
	P50           float64 `json:"p50_us"`
	P90           float64 `json:"p90_us"`
	P99           float64 `json:"p99_us"`
	ServerCPU     float64 `json:"server_cpu_us_per_check"`
	ServerCores   float64 `json:"server_cores"` // CPU time / window
	LoadCores     float64 `json:"load_cores"`   // this process
	OtherCores    float64 `json:"other_cores"`  // everything else
	RSS           int64   `json:"rss_bytes"`
	Allowed       int     `json:"allowed"` // answers with an OK status
	WindowSeconds float64 `json:"window_seconds"`
}

// drainTimeout bounds the wait for the calls in flight when a run ends.
const drainTimeout = 10 * time.Second

// Run measures cfg over one HTTP/2 connection, as Envoy's ext_authz filter
// uses one per worker thread. It fails if any call fails.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.InFlight < 1 || len(cfg.Requests) == 0 || cfg.Window <= 0 {
		return Result{}, errors.New("load: need InFlight >= 1, requests and a window")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c, err := dial(ctx, cfg.Addr, CheckMethod)
	if err != nil {
		return Result{}, fmt.Errorf("load: %w", err)
	}
	defer c.conn.Close()
	stop := context.AfterFunc(ctx, func() { c.conn.Close() })
	defer stop()

	framed := make([][]byte, len(cfg.Requests))
	for i, r := range cfg.Requests {
		framed[i] = frame(r)
	}
	var (
		measuring, stopped atomic.Bool
		lat                []time.Duration
		allowed            int
		loopErr            = make(chan error, 1)
	)
	go func() {
		loopErr <- closedLoop(c, framed, cfg.InFlight, &measuring, &stopped, func(took time.Duration, ok bool) {
			lat = append(lat, took)
			if ok {
				allowed++
			}
		})
	}()

	sleep(ctx, cfg.Warmup)
	before, err := sample(cfg.ServerPID)
	measuring.Store(true)
	sleep(ctx, cfg.Window)
	measuring.Store(false)
	after, err2 := sample(cfg.ServerPID)
	stopped.Store(true)
	var errLoop error
	select {
	case errLoop = <-loopErr:
	case <-time.After(drainTimeout):
		c.conn.Close()
		errLoop = fmt.Errorf("calls still in flight %v after the window", drainTimeout)
	}
	if err := errors.Join(errLoop, err, err2, ctx.Err()); err != nil {
		return Result{}, fmt.Errorf("load: %w", err)
	}
	if len(lat) == 0 {
		return Result{}, errors.New("load: no call finished within the window")
	}
	slices.Sort(lat)
	secs := after.wall.Sub(before.wall).Seconds()
	r := Result{Checks: len(lat), Allowed: allowed, WindowSeconds: secs}
	r.PerSecond = float64(r.Checks) / secs
	r.P50, r.P90, r.P99 = us(quantile(lat, .50)), us(quantile(lat, .90)), us(quantile(lat, .99))
	server := after.server - before.server
	self := after.self - before.self
	r.ServerCPU = server.Seconds() * 1e6 / float64(r.Checks)
	r.ServerCores = server.Seconds() / secs
	r.LoadCores = self.Seconds() / secs
	r.OtherCores = max(0, (after.busy-before.busy-server-self).Seconds()/secs)
	r.RSS = after.rss
	return r, nil
}

// closedLoop keeps inFlight calls going on c, sending requests round-robin,
// and reports each call that finishes while measuring is set. Once stopped
// is set it sends no more and returns when the last call has finished.
func closedLoop(c *client, requests [][]byte, inFlight int, measuring, stopped *atomic.Bool, report func(time.Duration, bool)) error {
	next := 0
	start := func(cl *call) error {
		cl.req = requests[next%len(requests)]
		next++
		return c.send(cl)
	}
	for range inFlight {
		if err := start(new(call)); err != nil {
			return err
		}
	}
	for busy := inFlight; busy > 0; {
		cl, err := c.next()
		if err != nil {
			return err
		}
		if measuring.Load() {
			report(time.Since(cl.start), statusOK(cl.resp))
		}
		if stopped.Load() {
			busy--
			continue
		}
		if err := start(cl); err != nil {
			return err
		}
	}
	return c.bw.Flush()
}

// Check sends one encoded CheckRequest with grpc-go's client and reports
// whether it was allowed. The benchmark probes servers with it, so that
// each has answered a client other than this package's own.
func Check(ctx context.Context, conn grpc.ClientConnInterface, req []byte) (allowed bool, err error) {
	var resp []byte
	if err := conn.Invoke(ctx, CheckMethod, req, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return false, err
	}
	return statusOK(resp), nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// statusOK reports whether an encoded CheckResponse has an OK status: its
// field 1 (google.rpc.Status) is absent or has code 0.
func statusOK(b []byte) bool {
	code := int64(0)
	walk(b, 1, func(st []byte) { code = varintField(st, 1) })
	return code == 0
}

// walk calls fn with the contents of every length-delimited field num of b.
func walk(b []byte, num protowire.Number, fn func([]byte)) {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return
			}
			fn(v)
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			return
		}
		b = b[m:]
	}
}

// varintField returns the last varint field num of b, or 0.
func varintField(b []byte, num protowire.Number) int64 {
	var v uint64
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			break
		}
		b = b[l:]
		if n == num && typ == protowire.VarintType {
			v, _ = protowire.ConsumeVarint(b)
		}
		m := protowire.ConsumeFieldValue(n, typ, b)
		if m < 0 {
			break
		}
		b = b[m:]
	}
	return int64(v)
}

// rawCodec sends []byte as it is and receives into *[]byte, so that requests
// are encoded once and answers are not decoded.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	p := v.(*[]byte)
	*p = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
