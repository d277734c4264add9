package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/bench/load"
)

// server is one ext_authz server under test, running on CPU 0, or a
// process that one depends on.
type server struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	addr    string
	conn    *grpc.ClientConn
	startup time.Duration // from exec to the first allowed Check
	idleRSS int64         // after start-up, before any load
	log     *os.File
	backend *server // a process the server needs (etcd), stopped after it
}

// startServer runs argv pinned to serverCPU, with env added to the
// environment and its output in logPath, and waits until it allows probe
// on addr, or with a nil probe until addr accepts connections.
func startServer(ctx context.Context, name, addr, logPath string, probe []byte, timeout time.Duration, env []string, argv ...string) (*server, error) {
	return startOn(ctx, serverCPU, name, addr, logPath, probe, timeout, env, argv...)
}

// startOn is startServer on the given CPU.
func startOn(ctx context.Context, cpu, name, addr, logPath string, probe []byte, timeout time.Duration, env []string, argv ...string) (*server, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	s := &server{name: name, addr: addr, log: log}
	s.cmd = exec.Command("taskset", append([]string{"-c", cpu}, argv...)...)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	s.cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx, probe, start.Add(timeout)); err != nil {
		s.stop()
		return nil, fmt.Errorf("%s: %w (see %s)", name, err, logPath)
	}
	s.startup = time.Since(start)
	return s, nil
}

func (s *server) waitReady(ctx context.Context, probe []byte, deadline time.Time) error {
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("exited before it was ready")
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond); err == nil {
			c.Close()
			if probe == nil {
				return nil
			}
			if s.conn == nil {
				conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					return err
				}
				s.conn = conn
			}
			if ok, err := load.Check(ctx, s.conn, probe); err == nil && ok {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("not ready in time")
}

// pid is the server's own process: taskset execs it in place.
func (s *server) pid() int { return s.cmd.Process.Pid }

// stop ends the server and waits for it, then stops its backend.
func (s *server) stop() {
	if s.backend != nil {
		defer s.backend.stop()
	}
	if s.conn != nil {
		s.conn.Close()
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Close()
}

// freeAddr returns a loopback address with a free port.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// binary returns the path of a benchmark binary in dir.
func binary(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w (run make bench-build)", err)
	}
	return p, nil
}
