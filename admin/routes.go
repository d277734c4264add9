package admin

import (
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// route binds one RPC to the HTTP method and path of its google.api.http
// option in admin.proto. The handler serves it and the Client calls it.
type route struct {
	rpc    string // the gRPC full method name
	desc   protoreflect.MethodDescriptor
	method string                       // GET or POST
	path   string                       // a ServeMux path, without the verb
	param  protoreflect.FieldDescriptor // the request field the path wildcard fills, named as it; nil for none
	verb   string                       // the custom method after a trailing wildcard, as "credit" in {account}:credit
	call   grpc.MethodHandler           // the generated gRPC handler, which decodes the request with its dec argument
}

// routes is the HTTP face of the admin API, one route per RPC in the
// service's order, read from the annotations when the package starts.
var routes = func() []*route {
	sd := adminv1.File_keygate_admin_v1_admin_proto.Services().ByName("Admin")
	rs := make([]*route, 0, len(adminv1.Admin_ServiceDesc.Methods))
	for _, m := range adminv1.Admin_ServiceDesc.Methods {
		rs = append(rs, newRoute(sd.Methods().ByName(protoreflect.Name(m.MethodName)), m.Handler))
	}
	return rs
}()

// routeByRPC finds a route by its gRPC full method name.
var routeByRPC = func() map[string]*route {
	m := make(map[string]*route, len(routes))
	for _, rt := range routes {
		m[rt.rpc] = rt
	}
	return m
}()

// newRoute builds the route of md from its google.api.http option. It
// panics on an option this transport does not serve: anything but a GET
// without a body or a POST with body "*", additional bindings, or a path
// wildcard that is not a string field of the request.
func newRoute(md protoreflect.MethodDescriptor, call grpc.MethodHandler) *route {
	rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
	rt := &route{rpc: fmt.Sprintf("/%s/%s", md.Parent().FullName(), md.Name()), desc: md, call: call}
	switch p := rule.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		rt.method, rt.path = http.MethodGet, p.Get
	case *annotations.HttpRule_Post:
		rt.method, rt.path = http.MethodPost, p.Post
	}
	if rt.method == "" || (rt.method == http.MethodPost) != (rule.GetBody() == "*") || len(rule.GetAdditionalBindings()) > 0 {
		panic(fmt.Sprintf("admin: %s: unsupported google.api.http option %v", md.FullName(), rule))
	}
	path := rt.path
	if i, j := strings.IndexByte(path, '{'), strings.IndexByte(path, '}'); 0 <= i && i < j {
		name := path[i+1 : j]
		if rest, ok := strings.CutPrefix(path[j+1:], ":"); ok {
			rt.path, rt.verb = path[:j+1], rest
		}
		rt.param = md.Input().Fields().ByName(protoreflect.Name(name))
		if rt.param == nil || rt.param.Kind() != protoreflect.StringKind {
			panic(fmt.Sprintf("admin: %s has no string field %q", md.Input().FullName(), name))
		}
	}
	return rt
}
