package admin

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// route binds one RPC to an HTTP method and path. The handler serves it and
// the Client calls it.
type route struct {
	rpc    string                       // the gRPC full method name
	method string                       // GET or POST
	path   string                       // a ServeMux path, without the verb
	param  protoreflect.FieldDescriptor // the request field the path wildcard fills, named as it; nil for none
	verb   string                       // the custom method after a trailing wildcard, as "credit" in {account}:credit
	newReq func() proto.Message
	call   func(context.Context, *Service, proto.Message) (proto.Message, error)
}

// routes is the HTTP face of the admin API, one line per RPC.
var routes = []*route{
	newRoute(adminv1.Admin_CreateAccount_FullMethodName, "POST /v1/accounts", (*Service).CreateAccount),
	newRoute(adminv1.Admin_ListAccounts_FullMethodName, "GET /v1/accounts", (*Service).ListAccounts),
	newRoute(adminv1.Admin_GetAccount_FullMethodName, "GET /v1/accounts/{account}", (*Service).GetAccount),
	newRoute(adminv1.Admin_CreditAccount_FullMethodName, "POST /v1/accounts/{account}:credit", (*Service).CreditAccount),
	newRoute(adminv1.Admin_DebitAccount_FullMethodName, "POST /v1/accounts/{account}:debit", (*Service).DebitAccount),
	newRoute(adminv1.Admin_DisableAccount_FullMethodName, "POST /v1/accounts/{account}:disable", (*Service).DisableAccount),
	newRoute(adminv1.Admin_EnableAccount_FullMethodName, "POST /v1/accounts/{account}:enable", (*Service).EnableAccount),
	newRoute(adminv1.Admin_ListLedger_FullMethodName, "GET /v1/accounts/{account}/ledger", (*Service).ListLedger),
	newRoute(adminv1.Admin_CreateKey_FullMethodName, "POST /v1/accounts/{account}/keys", (*Service).CreateKey),
	newRoute(adminv1.Admin_ListKeys_FullMethodName, "GET /v1/accounts/{account}/keys", (*Service).ListKeys),
	newRoute(adminv1.Admin_GetKey_FullMethodName, "GET /v1/keys/{key}", (*Service).GetKey),
	newRoute(adminv1.Admin_RevokeKey_FullMethodName, "POST /v1/keys/{key}:revoke", (*Service).RevokeKey),
	newRoute(adminv1.Admin_RotateKey_FullMethodName, "POST /v1/keys/{key}:rotate", (*Service).RotateKey),
}

// routeByRPC finds a route by its gRPC full method name.
var routeByRPC = func() map[string]*route {
	m := make(map[string]*route, len(routes))
	for _, rt := range routes {
		m[rt.rpc] = rt
	}
	return m
}()

// newRoute builds a route from "METHOD /path/{param}:verb" and a method
// expression of Service. It panics on a table that does not fit the proto.
func newRoute[Req, Resp proto.Message](rpc, pattern string, call func(*Service, context.Context, Req) (Resp, error)) *route {
	var zero Req
	reqType := zero.ProtoReflect().Type()
	method, path, _ := strings.Cut(pattern, " ")
	rt := &route{
		rpc:    rpc,
		method: method,
		path:   path,
		newReq: func() proto.Message { return reqType.New().Interface() },
		call: func(ctx context.Context, s *Service, req proto.Message) (proto.Message, error) {
			return call(s, ctx, req.(Req))
		},
	}
	if i, j := strings.IndexByte(path, '{'), strings.IndexByte(path, '}'); 0 <= i && i < j {
		name := path[i+1 : j]
		if rest, ok := strings.CutPrefix(path[j+1:], ":"); ok {
			rt.path, rt.verb = path[:j+1], rest
		}
		rt.param = reqType.Descriptor().Fields().ByName(protoreflect.Name(name))
		if rt.param == nil || rt.param.Kind() != protoreflect.StringKind {
			panic(fmt.Sprintf("admin: %s has no string field %q", reqType.Descriptor().FullName(), name))
		}
	}
	return rt
}
