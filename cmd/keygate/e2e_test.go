package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// keygateBinary is built once for all end-to-end tests.
var keygateBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "keygate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := keygateBinary(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// server is a "keygate serve" child process.
type server struct {
	t                   *testing.T
	cmd                 *exec.Cmd
	stderr              *bytes.Buffer
	db, grpcAddr, admin string
	done                chan struct{} // closed when the process has exited, its status in exit
	exit                error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer starts "keygate serve" on db with loopback addresses and the
// extra flags, and waits until it is ready.
func startServer(t *testing.T, db string, extra ...string) *server {
	t.Helper()
	bin, err := keygateBinary()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, db: db, grpcAddr: freeAddr(t), admin: freeAddr(t), stderr: new(bytes.Buffer), done: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"serve", "--db", db, "--grpc-addr", s.grpcAddr, "--admin-addr", s.admin, "--flush-interval", "100ms"}, extra...)...)
	s.cmd.Env = cleanEnv()
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exit = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	// Probe readiness; with TLS, whose certificate tests check themselves.
	probe, hc := "http://"+s.admin+"/readyz", http.DefaultClient
	if slices.Contains(extra, "--tls-cert") {
		probe, hc = "https://"+s.admin+"/readyz", &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := hc.Get(probe)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.done:
			t.Fatalf("keygate serve exited early: %v\n%s", s.exit, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("keygate serve not ready after 20s:\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.exit != nil {
			s.t.Fatalf("keygate serve exited with %v after SIGTERM:\n%s", s.exit, s.stderr)
		}
	case <-time.After(20 * time.Second):
		s.t.Fatalf("keygate serve did not stop within 20s of SIGTERM:\n%s", s.stderr)
	}
}

// cleanEnv is the environment without any KEYGATE_ variable of the caller.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// cli runs a keygate admin command against s and returns its stdout; it
// fails the test when the command fails.
func (s *server) cli(args ...string) string {
	s.t.Helper()
	out, errOut, err := s.tryCLI(args...)
	if err != nil {
		s.t.Fatalf("keygate %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (s *server) tryCLI(args ...string) (stdout, stderr string, err error) {
	bin, _ := keygateBinary()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), "KEYGATE_ADMIN_URL=http://"+s.admin, "KEYGATE_DB="+s.db)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// cliJSON runs a command with -o json and decodes its answer.
func (s *server) cliJSON(v any, args ...string) {
	s.t.Helper()
	out := s.cli(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("keygate %s -o json printed %q: %v", strings.Join(args, " "), out, err)
	}
}

// check sends an Envoy-shaped CheckRequest with the given Authorization
// header and returns the HTTP status Envoy would answer with (200 on allow).
func (s *server) check(authorization string) int {
	s.t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, envoyRequest(authorization))
	if err != nil {
		s.t.Fatalf("Check: %v", err)
	}
	return httpStatusOf(resp)
}

// httpStatusOf is the HTTP status Envoy answers a CheckResponse with (200
// on allow).
func httpStatusOf(resp *authv3.CheckResponse) int {
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return http.StatusOK
	}
	return int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// envoyRequest is a CheckRequest shaped as Envoy sends it, with the given
// Authorization header ("" for none).
func envoyRequest(authorization string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority": "api.example.com", ":method": "POST", ":path": "/v1/chat/completions?stream=false",
		":scheme": "https", "content-type": "application/json", "user-agent": "openai-python/1.54.0",
		"x-forwarded-for": "203.0.113.7, 10.0.0.2", "x-request-id": "0d4b2f0e-2f5e-4c55-9a38-5c1f0f1ed8a1",
	}
	if authorization != "" {
		headers["authorization"] = authorization
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.2", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 53122}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "POST", Path: "/v1/chat/completions?stream=false", Host: "api.example.com",
			Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
		}},
	}}
}

type accountJSON struct {
	ID      string `json:"id"`
	Balance string `json:"balance"`
	Status  string `json:"status"`
}

type keyJSON struct {
	ID         string `json:"id"`
	State      string `json:"state"`
	LastUsed   string `json:"lastUsedTime"`
	ReplacedBy string `json:"replacedBy"`
}

type secretJSON struct {
	Key      keyJSON `json:"key"`
	Secret   string  `json:"secret"`
	Previous keyJSON `json:"previous"`
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	db := filepath.Join(t.TempDir(), "keygate.db")
	s := startServer(t, db)

	if fi, err := os.Stat(db + ".admin-token"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want mode 0600", err, fi.Mode())
	}
	var acct accountJSON
	s.cliJSON(&acct, "account", "create", "--name", "Acme Corp", "--balance", "100")
	var k1, k2 secretJSON
	s.cliJSON(&k1, "key", "create", acct.ID, "--name", "backend")
	text := s.cli("key", "create", acct.ID, "--name", "notebook")
	k2.Secret = secretIn(t, text)
	k2.Key.ID = fieldIn(t, text, "ID:")

	if got := s.check("Bearer " + k1.Secret); got != 200 {
		t.Fatalf("valid key: HTTP %d, want 200", got)
	}
	if got := s.check("bearer " + k2.Secret); got != 200 {
		t.Fatalf("second key, lower-case scheme: HTTP %d, want 200", got)
	}
	if got := s.check(""); got != 401 {
		t.Fatalf("no header: HTTP %d, want 401", got)
	}
	if got := s.check(k1.Secret); got != 401 {
		t.Fatalf("no Bearer scheme: HTTP %d, want 401", got)
	}

	// Revoking one key leaves the other working, on the very next Check.
	s.cli("key", "revoke", k1.Key.ID)
	if got := s.check("Bearer " + k1.Secret); got != 401 {
		t.Fatalf("revoked key: HTTP %d, want 401", got)
	}
	if got := s.check("Bearer " + k2.Secret); got != 200 {
		t.Fatalf("other key after revoke: HTTP %d, want 200", got)
	}

	// Spending the balance blocks the account; a top-up unblocks it.
	s.cli("account", "debit", acct.ID, "--amount", "100", "--idempotency-key", "usage-1")
	if got := s.check("Bearer " + k2.Secret); got != 403 {
		t.Fatalf("zero balance: HTTP %d, want 403", got)
	}
	s.cli("account", "credit", acct.ID, "--amount", "50", "--idempotency-key", "topup-1")
	s.cli("account", "credit", acct.ID, "--amount", "50", "--idempotency-key", "topup-1") // a retry
	if got := s.check("Bearer " + k2.Secret); got != 200 {
		t.Fatalf("after top-up: HTTP %d, want 200", got)
	}
	s.cli("account", "disable", acct.ID)
	if got := s.check("Bearer " + k2.Secret); got != 403 {
		t.Fatalf("disabled account: HTTP %d, want 403", got)
	}
	s.cli("account", "enable", acct.ID)

	var rotated secretJSON
	s.cliJSON(&rotated, "key", "rotate", k2.Key.ID, "--grace", "1h")
	if got := s.check("Bearer " + rotated.Secret); got != 200 {
		t.Fatalf("rotated key: HTTP %d, want 200", got)
	}
	if got := s.check("Bearer " + k2.Secret); got != 200 {
		t.Fatalf("old key within its grace period: HTTP %d, want 200", got)
	}

	// A second server on the same database fails fast and says why.
	bin, _ := keygateBinary()
	second := exec.Command(bin, "serve", "--db", db, "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	second.Env = cleanEnv()
	start := time.Now()
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use by another keygate process") {
		t.Errorf("second serve on the same database: err %v, output %q; want a failure naming the lock", err, out)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("second serve took %v to fail", took)
	}

	s.stop()
	for _, secret := range []string{k1.Secret, k2.Secret, rotated.Secret} {
		if strings.Contains(s.stderr.String(), secret) {
			t.Fatal("the server log contains a secret")
		}
	}

	// After a restart nothing acknowledged is lost.
	s = startServer(t, db)
	var got accountJSON
	s.cliJSON(&got, "account", "get", acct.ID)
	if got.Balance != "50" || got.Status != "active" {
		t.Errorf("after restart: account %+v, want balance 50, active", got)
	}
	var k1After, k2After keyJSON
	s.cliJSON(&k1After, "key", "get", k1.Key.ID)
	s.cliJSON(&k2After, "key", "get", k2.Key.ID)
	if k1After.State != "revoked" {
		t.Errorf("after restart: revoked key is %q", k1After.State)
	}
	if k2After.ReplacedBy != rotated.Key.ID || k2After.LastUsed == "" {
		t.Errorf("after restart: rotated key %+v, want replacedBy %s and a last-used time", k2After, rotated.Key.ID)
	}
	var ledger struct {
		Entries []struct {
			Kind   string `json:"kind"`
			Amount string `json:"amount"`
		} `json:"entries"`
	}
	s.cliJSON(&ledger, "account", "ledger", acct.ID)
	if len(ledger.Entries) != 3 {
		t.Errorf("after restart: ledger %+v, want open, debit and one credit", ledger.Entries)
	}
	if got := s.check("Bearer " + k1.Secret); got != 401 {
		t.Errorf("after restart: revoked key answers %d", got)
	}
	if got := s.check("Bearer " + rotated.Secret); got != 200 {
		t.Errorf("after restart: rotated key answers %d", got)
	}
	s.stop()
}

// secretIn finds the secret that "keygate key create" printed as text.
func secretIn(t *testing.T, text string) string {
	t.Helper()
	for _, f := range strings.Fields(text) {
		if strings.HasPrefix(f, "sk-") && !strings.Contains(f, "...") {
			return f
		}
	}
	t.Fatalf("no secret in %q", text)
	return ""
}

// fieldIn returns the value printed after label in a command's text output.
func fieldIn(t *testing.T, text, label string) string {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == label {
			return f[1]
		}
	}
	t.Fatalf("no %q line in %q", label, text)
	return ""
}

// TestServeHealthAndMetrics checks gRPC health and the metrics a fresh
// server exports.
func TestServeHealthAndMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	s := startServer(t, filepath.Join(t.TempDir(), "keygate.db"))
	// The gRPC side serves health.
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hr, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v, %v", hr, err)
	}
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	_, err = body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"keygate_checks_total", "keygate_store_accounts", "keygate_check_duration_seconds"} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	s.stop()
}
