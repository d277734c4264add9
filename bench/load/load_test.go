package load

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// allowEven allows requests whose path has an even length.
type allowEven struct {
	authv3.UnimplementedAuthorizationServer
}

func (allowEven) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	code := int32(0)
	if len(r.GetAttributes().GetRequest().GetHttp().GetPath())%2 == 1 {
		code = 7
	}
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: code}}, nil
}

func request(t *testing.T, path string) []byte {
	b, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Path: path},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRun runs the load generator against an in-process server for a
// moment: it counts Checks and allowed answers and reads this process's
// CPU and memory.
func TestRun(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, allowEven{})
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	allowed, denied := request(t, "/a"), request(t, "/ab")
	if ok, err := Check(t.Context(), conn, allowed); !ok || err != nil {
		t.Fatalf("Check(allowed) = %t, %v", ok, err)
	}
	if ok, err := Check(t.Context(), conn, denied); ok || err != nil {
		t.Fatalf("Check(denied) = %t, %v", ok, err)
	}
	r, err := Run(t.Context(), Config{
		Addr: lis.Addr().String(), Requests: [][]byte{allowed, denied}, InFlight: 4,
		Warmup: 50 * time.Millisecond, Window: 300 * time.Millisecond, ServerPID: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Checks == 0 || r.PerSecond <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.RSS <= 0 {
		t.Errorf("implausible result %+v", r)
	}
	if share := float64(r.Allowed) / float64(r.Checks); share < 0.4 || share > 0.6 {
		t.Errorf("allowed %d of %d, want about half", r.Allowed, r.Checks)
	}
}

// padded answers like allowEven, with a trailer of pad bytes.
type padded struct {
	allowEven
	pad int
}

func (p padded) Check(ctx context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-pad", strings.Repeat("p", p.pad))); err != nil {
		return nil, err
	}
	return p.allowEven.Check(ctx, r)
}

// failing fails every Check.
type failing struct {
	authv3.UnimplementedAuthorizationServer
}

func (failing) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return nil, status.Error(codes.Unavailable, "store down")
}

func serve(t *testing.T, srv authv3.AuthorizationServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// TestRunLargeFrames sends requests that need several DATA frames and
// together overflow the connection's initial send window, and gets
// trailers that need CONTINUATION frames: every call must still finish and
// be counted.
func TestRunLargeFrames(t *testing.T) {
	addr := serve(t, padded{pad: 40 << 10})
	long := "/" + strings.Repeat("x", 50<<10)
	r, err := Run(t.Context(), Config{
		Addr: addr, Requests: [][]byte{request(t, long), request(t, long+"x")}, InFlight: 8,
		Warmup: 50 * time.Millisecond, Window: 300 * time.Millisecond, ServerPID: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Checks == 0 {
		t.Fatalf("no Checks finished: %+v", r)
	}
	if share := float64(r.Allowed) / float64(r.Checks); share < 0.4 || share > 0.6 {
		t.Errorf("allowed %d of %d, want about half", r.Allowed, r.Checks)
	}
}

// TestRunFails: a call that fails ends the run with the server's status.
func TestRunFails(t *testing.T) {
	addr := serve(t, failing{})
	_, err := Run(t.Context(), Config{
		Addr: addr, Requests: [][]byte{request(t, "/a")}, InFlight: 2,
		Warmup: 50 * time.Millisecond, Window: 100 * time.Millisecond, ServerPID: os.Getpid(),
	})
	if err == nil || !strings.Contains(err.Error(), "grpc-status 14: store down") {
		t.Fatalf("Run = %v, want the server's grpc-status 14", err)
	}
}

// TestRunNoServer: nothing listening is a clear error, not a hang.
func TestRunNoServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	_, err = Run(t.Context(), Config{Addr: addr, Requests: [][]byte{request(t, "/a")}, InFlight: 1, Window: time.Second})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run = %v, want connection refused", err)
	}
}
