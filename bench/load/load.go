// Package load is the benchmark's closed-loop gRPC load generator for Envoy
// ext_authz servers. A fixed number of calls are in flight; each sends one
// of a set of pre-encoded CheckRequests and sends the next as soon as the
// answer arrives. After a warm-up it measures for a bounded window, then
// stops.
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
	"sync"
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
	Conn      grpc.ClientConnInterface
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

// Run measures cfg. It fails if any call fails.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.InFlight < 1 || len(cfg.Requests) == 0 || cfg.Window <= 0 {
		return Result{}, errors.New("load: need InFlight >= 1, requests and a window")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		measuring atomic.Bool
		stopped   atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		firstErr  error
	)
	lat := make([][]time.Duration, cfg.InFlight)
	allowed := make([]int, cfg.InFlight)
	for w := range cfg.InFlight {
		wg.Go(func() {
			var resp []byte
			i := w * len(cfg.Requests) / cfg.InFlight
			for !stopped.Load() {
				req := cfg.Requests[i%len(cfg.Requests)]
				i++
				start := time.Now()
				err := cfg.Conn.Invoke(ctx, CheckMethod, req, &resp, grpc.ForceCodecV2(rawCodec{}))
				took := time.Since(start)
				if err != nil {
					if !stopped.Load() {
						mu.Lock()
						firstErr = cmpOr(firstErr, err)
						mu.Unlock()
						cancel()
					}
					return
				}
				if measuring.Load() {
					lat[w] = append(lat[w], took)
					if statusOK(resp) {
						allowed[w]++
					}
				}
			}
		})
	}

	sleep(ctx, cfg.Warmup)
	before, err := sample(cfg.ServerPID)
	measuring.Store(true)
	sleep(ctx, cfg.Window)
	measuring.Store(false)
	after, err2 := sample(cfg.ServerPID)
	stopped.Store(true)
	wg.Wait()
	if err := errors.Join(firstErr, err, err2, ctx.Err()); err != nil {
		return Result{}, fmt.Errorf("load: %w", err)
	}

	var all []time.Duration
	r := Result{}
	for w := range lat {
		all = append(all, lat[w]...)
		r.Allowed += allowed[w]
	}
	if len(all) == 0 {
		return Result{}, errors.New("load: no call finished within the window")
	}
	slices.Sort(all)
	secs := after.wall.Sub(before.wall).Seconds()
	r.Checks = len(all)
	r.WindowSeconds = secs
	r.PerSecond = float64(r.Checks) / secs
	r.P50, r.P90, r.P99 = us(quantile(all, .50)), us(quantile(all, .90)), us(quantile(all, .99))
	server := after.server - before.server
	self := after.self - before.self
	r.ServerCPU = server.Seconds() * 1e6 / float64(r.Checks)
	r.ServerCores = server.Seconds() / secs
	r.LoadCores = self.Seconds() / secs
	r.OtherCores = max(0, (after.busy-before.busy-server-self).Seconds()/secs)
	r.RSS = after.rss
	return r, nil
}

// Check sends one encoded CheckRequest and reports whether it was allowed.
func Check(ctx context.Context, conn grpc.ClientConnInterface, req []byte) (allowed bool, err error) {
	var resp []byte
	if err := conn.Invoke(ctx, CheckMethod, req, &resp, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return false, err
	}
	return statusOK(resp), nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
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
