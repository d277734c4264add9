package envoy_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
)

// wireFixture is a fixture with the vectors' secrets filled in.
type wireFixture struct {
	*fixture
	secrets *strings.Replacer
}

func newWireFixture(t testing.TB) *wireFixture {
	f := newFixture(t)
	other := f.key(t, f.active.ID, "other", time.Time{})
	var pairs []string
	for name, k := range map[string]authz.Key{"ACTIVE": f.activeKey, "OTHER": other, "REVOKED": f.revokedKey, "DISABLED": f.disabledKey, "ZERO": f.zeroKey} {
		pairs = append(pairs, "$"+name, f.secret[k.ID])
	}
	return &wireFixture{f, strings.NewReplacer(pairs...)}
}

// requests returns every request the wire path is checked on: the Envoy
// vectors, every fixture case in every shape, and odd encodings.
func (f *wireFixture) requests(t testing.TB) map[string]*authv3.CheckRequest {
	reqs := map[string]*authv3.CheckRequest{}
	for _, v := range envoyVectors() {
		req := new(authv3.CheckRequest)
		if err := prototext.Unmarshal([]byte(f.secrets.Replace(v.req)), req); err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		reqs["vector "+v.name] = req
	}
	for _, c := range f.cases() {
		for _, s := range shapes {
			reqs[c.name+", "+s.name] = envoyCheck(s, c.auth...)
		}
	}
	reqs["nothing"] = &authv3.CheckRequest{}
	reqs["raw and value"] = envoyCheckWithMapEntries(
		&corev3.HeaderValue{Key: "Authorization", Value: "Bearer x", RawValue: []byte(f.bearer(f.activeKey))})
	return reqs
}

// TestWireRequest checks that the wire decoder reads what RequestFromCheck
// reads from the whole message, for every request and for the same
// requests encoded in pieces that proto.Unmarshal merges.
func TestWireRequest(t *testing.T) {
	f := newWireFixture(t)
	for name, req := range f.requests(t) {
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range [][]byte{b, split(t, b)} {
			assertSameRequest(t, name, enc)
		}
	}
}

// split re-encodes a CheckRequest with each field of attributes,
// attributes.request and attributes.request.http in a message of its own,
// which proto.Unmarshal merges back into one.
func split(t testing.TB, b []byte) []byte {
	var out []byte
	path := []protowire.Number{1, 4, 2}
	var walk func(b []byte, depth int, wrap func([]byte) []byte)
	walk = func(b []byte, depth int, wrap func([]byte) []byte) {
		for len(b) > 0 {
			num, typ, n := protowire.ConsumeTag(b)
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if n < 0 || m < 0 {
				t.Fatal("bad encoding")
			}
			field := b[:n+m]
			if depth < len(path) && num == path[depth] && typ == protowire.BytesType {
				v, _ := protowire.ConsumeBytes(b[n:])
				walk(v, depth+1, func(inner []byte) []byte {
					return wrap(protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), inner))
				})
			} else {
				out = append(out, wrap(field)...)
			}
			b = b[n+m:]
		}
	}
	walk(b, 0, func(b []byte) []byte { return b })
	return out
}

func assertSameRequest(t *testing.T, name string, b []byte) {
	t.Helper()
	full := new(authv3.CheckRequest)
	fullErr := proto.Unmarshal(b, full)
	got, err := envoy.WireRequest(b)
	switch {
	case fullErr == nil && err != nil:
		t.Errorf("%s: the wire decoder refuses what proto.Unmarshal reads: %v", name, err)
	case fullErr != nil && err == nil:
		// Allowed only for faults in parts the wire decoder skips; the
		// decoded fields must still match a lenient decode.
	case err == nil:
		if want := envoy.RequestFromCheck(full); got != want {
			t.Errorf("%s: wire decoder read\n%+v\nRequestFromCheck reads\n%+v", name, got, want)
		}
	}
}

// FuzzWireRequest checks the wire decoder against proto.Unmarshal and
// RequestFromCheck on arbitrary bytes: what proto.Unmarshal reads, the wire
// decoder reads too, into the same Request.
func FuzzWireRequest(f *testing.F) {
	wf := newWireFixture(f)
	for _, req := range wf.requests(f) {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x22, 0x00})             // attributes { request { } }
	f.Add([]byte{0x0a, 0x04, 0x52, 0x02, 0x0a, 0xff}) // context_extensions key not UTF-8
	f.Fuzz(func(t *testing.T, b []byte) {
		assertSameRequest(t, "fuzz", b)
	})
}

// serveWire runs srv's wire path on a real gRPC server, with health beside
// it as in keygate serve.
func serveWire(t testing.TB, srv *envoy.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(envoy.WireCodec()), grpc.NumStreamWorkers(2))
	srv.RegisterWire(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return conn
}

// TestWireCheck sends every request over gRPC to the wire path and
// compares the answer with Check's, whole.
func TestWireCheck(t *testing.T) {
	f := newWireFixture(t)
	srv := envoy.NewServer(f.authz, prometheus.NewRegistry())
	conn := serveWire(t, srv)
	client := authv3.NewAuthorizationClient(conn)
	for name, req := range f.requests(t) {
		got, err := client.Check(t.Context(), req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, err := srv.Check(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: wire path answered\n%s\nCheck answers\n%s", name, prototext.Format(got), prototext.Format(want))
		}
		b, _ := proto.Marshal(req)
		direct, err := srv.AppendCheck(t.Context(), nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if resp := new(authv3.CheckResponse); proto.Unmarshal(direct, resp) != nil || !proto.Equal(resp, want) {
			t.Errorf("%s: AppendCheck answered\n%s", name, prototext.Format(resp))
		}
	}

	// Other services on the server keep the standard codec.
	if _, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health: %v", err)
	}
	// A request that does not decode is refused, as grpc-go refuses it.
	var out []byte
	err := conn.Invoke(t.Context(), authv3.Authorization_Check_FullMethodName, []byte{0x0a, 0x05}, &out, grpc.ForceCodec(rawCodec{}))
	if err == nil {
		t.Error("a truncated request was answered")
	}
}

// TestWireCheckAllocs pins the allocations of the wire path without
// transport: none for any answer.
func TestWireCheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	f := newFixture(t)
	srv := envoy.NewServer(f.authz, prometheus.NewRegistry())
	ctx := context.Background()
	for _, c := range f.cases() {
		t.Run(c.name, func(t *testing.T) {
			req, err := proto.Marshal(envoyCheck(shapes[0], c.auth...))
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 0, 4096)
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := srv.AppendCheck(ctx, buf[:0], req); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 0 {
				t.Errorf("AppendCheck allocates %v times, want 0", allocs)
			}
		})
	}
}

// rawCodec sends []byte as it is, for requests no client would encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *v.(*[]byte) = bytes.Clone(data); return nil }
func (rawCodec) Name() string                       { return "proto" }

// TestWireInterceptor checks that a unary interceptor on the wire path sees
// a CheckRequest with the fields Check reads, and can refuse the call.
func TestWireInterceptor(t *testing.T) {
	f := newFixture(t)
	srv := envoy.NewServer(f.authz, prometheus.NewRegistry())
	var seen atomic.Value
	intercept := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r := req.(*authv3.CheckRequest)
		seen.Store(envoy.RequestFromCheck(r).Authorization + " " + info.FullMethod)
		if r.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"] == "refuse" {
			return nil, status.Error(codes.PermissionDenied, "refused by the interceptor")
		}
		return handler(ctx, req)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(envoy.WireCodec()), grpc.UnaryInterceptor(intercept))
	srv.RegisterWire(gs)
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)

	resp, err := client.Check(t.Context(), envoyCheck(shapes[0], f.bearer(f.activeKey)))
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("Check through the interceptor: %v, %v", resp.GetStatus(), err)
	}
	if want := f.bearer(f.activeKey) + " " + authv3.Authorization_Check_FullMethodName; seen.Load() != want {
		t.Errorf("the interceptor saw %q, want %q", seen.Load(), want)
	}
	if _, err := client.Check(t.Context(), envoyCheck(shapes[0], "refuse")); status.Code(err) != codes.PermissionDenied {
		t.Errorf("refused call: %v", err)
	}
}

// TestWireHeaderEntryForms: a headers map entry in a form other than key
// then value (reordered, repeated, partial, with extra fields, with long
// length varints) decodes as proto.Unmarshal decodes it.
func TestWireHeaderEntryForms(t *testing.T) {
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	const bearer = "Bearer sk-kg-abc"
	key, value := str(1, "authorization"), str(2, bearer)
	longLength := cat([]byte{1<<3 | 2, 0x8d, 0x00}, []byte("authorization")) // 13 as two varint bytes
	forms := map[string][]byte{
		"key, value":             cat(key, value),
		"value, key":             cat(value, key),
		"key only":               key,
		"value only":             value,
		"other key, then key":    cat(str(1, "x-other"), key, value),
		"key, value, other key":  cat(key, value, str(1, "x-other")),
		"two values":             cat(key, str(2, "Bearer first"), value),
		"extra varint field":     cat(key, value, protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7)),
		"long length varint":     cat(longLength, value),
		"value not UTF-8":        cat(key, str(2, "Bearer \xff")),
		"replaced key not UTF-8": cat(str(1, "\xff"), key, value),
		"truncated":              cat(key, value)[:5],
	}
	for name, entry := range forms {
		http := str(3, string(entry))
		msg := str(1, string(str(4, string(str(2, string(http))))))
		assertSameRequest(t, name, msg)
	}
}
