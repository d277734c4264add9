package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// loadCPU is where the load generator runs, and the etcd member of
// keygate-etcd with it: CPU 0 holds the keygate server alone, as it does
// for keygate on bbolt. Once loaded, etcd has little to do during a
// measurement (the replica's heartbeat, once a second).
const loadCPU = "1"

// etcdPrefix is the etcd prefix of keygate-etcd's data.
const etcdPrefix = "/keygate/"

// etcdWith starts a one-member etcd cluster on loadCPU, with its data in a
// fresh directory of the work dir, and copies the bbolt database db into
// it with keygate migrate (bin). It returns the member and its client URL.
func etcdWith(ctx context.Context, o options, keys int, bin, db string, rep *report) (*server, string, error) {
	etcdBin, err := binary(o.bin, "etcd")
	if err != nil {
		return nil, "", err
	}
	dir := filepath.Join(o.work, fmt.Sprintf("etcd-%d", keys))
	if err := os.RemoveAll(dir); err != nil {
		return nil, "", err
	}
	client, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	peer, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	logPath := filepath.Join(o.work, fmt.Sprintf("etcd-%d.log", keys))
	s, err := startOn(ctx, loadCPU, "etcd", client, logPath, nil, o.readyTimeout, nil, etcdBin, "-dir", dir, "-client", client, "-peer", peer)
	if err != nil {
		return nil, "", err
	}
	url := "http://" + client
	if err := waitHealthy(ctx, url, time.Now().Add(o.readyTimeout)); err != nil {
		s.stop()
		return nil, "", fmt.Errorf("etcd: %w (see %s)", err, logPath)
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "taskset", "-c", serverCPU, bin, "migrate", "--db", db,
		"--etcd-endpoints", url, "--etcd-prefix", etcdPrefix).CombinedOutput()
	if err != nil {
		s.stop()
		return nil, "", fmt.Errorf("keygate migrate: %w: %s", err, out)
	}
	summary := fmt.Sprintf("%s (%.1f s)", strings.TrimSpace(string(out)), time.Since(start).Seconds())
	rep.EtcdLoads[keys] = summary
	log.Printf("%d keys: %s", keys, summary)
	return s, url, nil
}

// waitHealthy waits until the etcd member at url reports itself healthy:
// it has a leader and serves.
func waitHealthy(ctx context.Context, url string, deadline time.Time) error {
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`) {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not healthy in time")
}
