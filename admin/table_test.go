package admin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

func TestErrorClasses(t *testing.T) {
	var logged bytes.Buffer // toStatus logs the internal errors below, to the Service's logger
	svc := NewService(nil, ServiceOptions{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	seen := map[codes.Code]bool{}
	for _, c := range errorClasses {
		if seen[c.grpc] {
			t.Errorf("gRPC code %s appears twice", c.grpc)
		}
		seen[c.grpc] = true
	}
	for code, want := range map[authz.ErrorCode]int{
		authz.EInvalid:     http.StatusBadRequest,
		authz.ENotFound:    http.StatusNotFound,
		authz.EConflict:    http.StatusConflict,
		authz.EUnavailable: http.StatusServiceUnavailable,
		authz.EInternal:    http.StatusInternalServerError,
	} {
		st := status.Convert(svc.toStatus(authz.Errorf(code, "boom")))
		if got := classOfGRPC(st.Code()); got.http != want || got.code != string(code) {
			t.Errorf("%s: round trip gives %+v, want HTTP %d", code, got, want)
		}
	}
	for _, err := range []error{
		errors.New("disk on fire at /var/lib/keygate"),
		fmt.Errorf("wrapped: %w", authz.Errorf(authz.EInternal, "bucket missing")),
		&authz.Error{Message: "no code"},
	} {
		st := status.Convert(svc.toStatus(err))
		if st.Code() != codes.Internal || st.Message() != "internal error" {
			t.Errorf("%v: status %v, want Internal with a hidden message", err, st)
		}
	}
	if !strings.Contains(logged.String(), "level=ERROR msg=\"admin: internal error\"") || !strings.Contains(logged.String(), "disk on fire") {
		t.Errorf("the internal errors are not in the Service's log:\n%s", logged.String())
	}
	if got := status.Code(svc.toStatus(fmt.Errorf("store: %w", context.DeadlineExceeded))); got != codes.DeadlineExceeded {
		t.Errorf("deadline: code %s", got)
	}
	if got := status.Code(svc.toStatus(fmt.Errorf("x: %w", authz.Errorf(authz.ENotFound, "gone")))); got != codes.NotFound {
		t.Errorf("wrapped not found: code %s", got)
	}
}

// Every RPC of the proto has one route and one Client method.
func TestRoutesCoverService(t *testing.T) {
	sd := adminv1.File_keygate_admin_v1_admin_proto.Services().ByName("Admin")
	methods := sd.Methods()
	if len(routes) != methods.Len() || len(routeByRPC) != len(routes) {
		t.Errorf("%d routes, %d distinct, for %d RPCs", len(routes), len(routeByRPC), methods.Len())
	}
	client := reflect.TypeFor[*Client]()
	for i := range methods.Len() {
		m := methods.Get(i)
		name := fmt.Sprintf("/%s/%s", sd.FullName(), m.Name())
		rt := routeByRPC[name]
		if rt == nil {
			t.Errorf("no route for %s", name)
			continue
		}
		if rt.desc != m {
			t.Errorf("%s: route of %s", name, rt.desc.FullName())
		}
		if _, ok := client.MethodByName(string(m.Name())); !ok {
			t.Errorf("Client has no method %s", m.Name())
		}
	}
}
