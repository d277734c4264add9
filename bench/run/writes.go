package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/bench/load"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// writers is how many admin clients write at once.
const writers = 32

// writeRow is one measurement of writes through the admin API.
type writeRow struct {
	Op        string  `json:"op"`
	Writers   int     `json:"writers"`
	Writes    int     `json:"writes"`
	PerSecond float64 `json:"writes_per_second"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	ServerCPU float64 `json:"server_cpu_us_per_write"`
}

// measureWrites runs keygate on an empty database and has 32 admin clients
// create keys, then debit accounts, each for a warm-up and a window. Every
// write is acknowledged only once it is on disk.
func measureWrites(ctx context.Context, o options) ([]writeRow, error) {
	bin, err := binary(o.bin, "keygate")
	if err != nil {
		return nil, err
	}
	db := filepath.Join(o.work, "writes.db")
	if err := removeDB(db); err != nil {
		return nil, err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	log.Printf("writes: starting keygate")
	s, err := startServer(ctx, keygateServer, adminAddr, filepath.Join(o.work, "writes.log"), nil, o.readyTimeout, nil,
		bin, "serve", "--db", db, "--grpc-addr", grpcAddr, "--admin-addr", adminAddr)
	if err != nil {
		return nil, err
	}
	defer s.stop()
	token, err := os.ReadFile(db + ".admin-token")
	if err != nil {
		return nil, err
	}
	client := admin.NewClient("http://"+adminAddr, strings.TrimSpace(string(token)), &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: writers},
		Timeout:   10 * time.Second,
	})
	accounts := make([]string, 100)
	for i := range accounts {
		a, err := client.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: fmt.Sprintf("bench %d", i), Balance: 1 << 40})
		if err != nil {
			return nil, fmt.Errorf("writes: %w", err)
		}
		accounts[i] = a.GetId()
	}
	var rows []writeRow
	for _, op := range []struct {
		name  string
		write func(ctx context.Context, i int) error
	}{
		{"create key", func(ctx context.Context, i int) error {
			_, err := client.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: accounts[i%len(accounts)], Name: "bench"})
			return err
		}},
		{"debit", func(ctx context.Context, i int) error {
			_, err := client.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: accounts[i%len(accounts)], Amount: 1})
			return err
		}},
	} {
		r, err := runWrites(ctx, o, s.pid(), op.write)
		if err != nil {
			return nil, fmt.Errorf("writes, %s: %w", op.name, err)
		}
		r.Op = op.name
		log.Printf("writes, %s: %.0f/s, p99 %.1f ms", op.name, r.PerSecond, r.P99)
		rows = append(rows, r)
	}
	return rows, nil
}

// runWrites has writers clients call write in a closed loop for a warm-up
// and a window, and measures the window.
func runWrites(ctx context.Context, o options, pid int, write func(ctx context.Context, i int) error) (writeRow, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next      atomic.Int64
		measuring atomic.Bool
		stopped   atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		lat       []time.Duration
		firstErr  error
	)
	for range writers {
		wg.Go(func() {
			var mine []time.Duration
			for !stopped.Load() {
				start := time.Now()
				if err := write(ctx, int(next.Add(1))); err != nil {
					if !stopped.Load() {
						mu.Lock()
						firstErr = cmpErr(firstErr, err)
						mu.Unlock()
						cancel()
					}
					break
				}
				if measuring.Load() {
					mine = append(mine, time.Since(start))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	time.Sleep(o.warmup)
	cpu0, err := load.ProcessCPU(pid)
	start := time.Now()
	measuring.Store(true)
	time.Sleep(o.window)
	measuring.Store(false)
	took := time.Since(start)
	cpu1, err2 := load.ProcessCPU(pid)
	stopped.Store(true)
	wg.Wait()
	if err := cmpErr(firstErr, cmpErr(err, err2)); err != nil {
		return writeRow{}, err
	}
	if len(lat) == 0 {
		return writeRow{}, fmt.Errorf("no write finished within the window")
	}
	slices.Sort(lat)
	ms := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / float64(time.Millisecond)
	}
	return writeRow{
		Writers:   writers,
		Writes:    len(lat),
		PerSecond: float64(len(lat)) / took.Seconds(),
		P50:       ms(.5),
		P99:       ms(.99),
		ServerCPU: (cpu1 - cpu0).Seconds() * 1e6 / float64(len(lat)),
	}, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
