package envoy

import (
	"context"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/keygate/keygate/authz"
)

// The wire path serves Check without decoding the whole CheckRequest or
// encoding a CheckResponse: WireCodec hands Check the encoded request, which
// the wire decoder walks for the fields RequestFromCheck reads, and the
// answer goes out as bytes encoded ahead of time. It decides exactly as Check
// does, and answers the same messages.

// WireCodec returns the gRPC codec of a server on which RegisterWire
// registered Check (grpc.ForceServerCodecV2). It passes Check's request
// and answer through as bytes, and encodes and decodes every other message
// with gRPC's standard protobuf codec.
func WireCodec() encoding.CodecV2 {
	return wireCodec{encoding.GetCodecV2(proto.Name)}
}

type wireCodec struct{ std encoding.CodecV2 }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if a, ok := v.(*wireCall); ok {
		return a.answer(), nil
	}
	return c.std.Marshal(v)
}

func (c wireCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if w, ok := v.(*wireCall); ok {
		return w.receive(data)
	}
	return c.std.Unmarshal(data, v)
}

func (wireCodec) Name() string { return proto.Name }

// RegisterWire registers s's Check on gs, in place of
// authv3.RegisterAuthorizationServer, for a gs made with WireCodec.
// Interceptors see a CheckRequest that holds only the fields Check reads,
// in memory that is reused once the call is over: they must not keep it.
func (s *Server) RegisterWire(gs *grpc.Server) {
	desc := authv3.Authorization_ServiceDesc
	desc.HandlerType = (*any)(nil)
	desc.Methods = []grpc.MethodDesc{{MethodName: "Check", Handler: s.wireHandler}}
	gs.RegisterService(&desc, s)
}

var checkInfo = &grpc.UnaryServerInfo{FullMethod: authv3.Authorization_Check_FullMethodName}

func (s *Server) wireHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	c := getCall()
	if err := dec(c); err != nil {
		c.release()
		return nil, err
	}
	if interceptor == nil {
		return s.checkCall(ctx, c)
	}
	var handled, answered bool
	a, err := interceptor(ctx, &c.w.msg, checkInfo, func(ctx context.Context, _ any) (any, error) {
		handled = true
		r, err := s.checkCall(ctx, c)
		answered = err == nil
		return r, err
	})
	// c goes to the codec only as the answer; checkCall released it if it
	// failed.
	if (!handled || answered) && a != any(c) {
		c.release()
	}
	return a, err
}

// checkCall decides c and encodes the answer into it. On error it releases
// c; otherwise the codec does, once it has handed the answer to gRPC.
func (s *Server) checkCall(ctx context.Context, c *wireCall) (*wireCall, error) {
	start := time.Now()
	d, o, err := s.decide(ctx, c.req)
	if err == nil {
		c.out, err = s.templates.appendAnswer(c.out[:0], o, d)
	}
	s.metrics.Since(start)
	if err != nil {
		c.release()
		return nil, err
	}
	return c, nil
}

// AppendCheck is Check on an encoded CheckRequest: it appends the encoded
// CheckResponse to dst. It is the wire path without gRPC, for benchmarks
// and tests.
func (s *Server) AppendCheck(ctx context.Context, dst, req []byte) ([]byte, error) {
	c := getCall()
	if err := c.decode(req); err != nil {
		c.release()
		return nil, err
	}
	c, err := s.checkCall(ctx, c)
	if err != nil {
		return nil, err
	}
	dst = append(dst, c.out...)
	c.release()
	return dst, nil
}

// wireCall is one Check on the wire path: the request, decoded, and the
// encoded answer. Calls are pooled.
type wireCall struct {
	w   *wireRequest
	req authz.Request
	// held is the received message, which req's strings point into; the
	// call holds a reference to it until release.
	held mem.Buffer
	out  []byte
}

var calls = sync.Pool{New: func() any { return &wireCall{w: newWireRequest()} }}

func getCall() *wireCall { return calls.Get().(*wireCall) }

// receive decodes the request in data, keeping data's memory until release.
func (c *wireCall) receive(data mem.BufferSlice) error {
	if len(data) == 1 {
		data[0].Ref()
		c.held = data[0]
		return c.decode(data[0].ReadOnlyData())
	}
	return c.decode(data.Materialize())
}

func (c *wireCall) decode(b []byte) error {
	msg, err := c.w.decode(b)
	if err != nil {
		return err
	}
	c.req = RequestFromCheck(msg)
	return nil
}

// answer hands the encoded answer to gRPC in a buffer of its own, and
// releases c.
func (c *wireCall) answer() mem.BufferSlice {
	pool := mem.DefaultBufferPool()
	buf := pool.Get(len(c.out))
	copy(*buf, c.out)
	c.release()
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}
}

// release drops c's references to the request and returns c to the pool.
func (c *wireCall) release() {
	c.w.reset()
	c.req = authz.Request{}
	if c.held != nil {
		c.held.Free()
		c.held = nil
	}
	if cap(c.out) > 64<<10 {
		c.out = nil // do not pool the memory of a freak answer
	}
	calls.Put(c)
}
