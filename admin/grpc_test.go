package admin_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

func TestGRPC(t *testing.T) {
	e := newEnv(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(admin.GRPCServerOptions(admin.NewTokens(testToken))...)
	adminv1.RegisterAdminServer(srv, e.svc)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := adminv1.NewAdminClient(conn)

	wantCode := func(t *testing.T, err error, code codes.Code) {
		t.Helper()
		if status.Code(err) != code {
			t.Errorf("error %v, want code %s", err, code)
		}
	}
	req := &adminv1.CreateAccountRequest{Name: "acme", Balance: 7}
	_, err = client.CreateAccount(context.Background(), req)
	wantCode(t, err, codes.Unauthenticated)
	_, err = client.CreateAccount(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer wrong"), req)
	wantCode(t, err, codes.Unauthenticated)

	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+testToken)
	// A request larger than the JSON API's 1 MiB is refused before it is
	// read, as over HTTP (413).
	_, err = client.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: strings.Repeat("a", 1<<20)})
	wantCode(t, err, codes.ResourceExhausted)
	acct, err := client.CreateAccount(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.GetAccount(ctx, &adminv1.GetAccountRequest{Account: acct.Id})
	if err != nil || got.Balance != 7 || got.Status != "active" {
		t.Errorf("GetAccount = %v, %v", got, err)
	}
	_, err = client.GetAccount(ctx, &adminv1.GetAccountRequest{Account: "acme"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = client.GetAccount(ctx, &adminv1.GetAccountRequest{Account: "acct_00000000000000000000000000"})
	wantCode(t, err, codes.NotFound)
	_, err = client.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 1, IdempotencyKey: "i"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 2, IdempotencyKey: "i"})
	wantCode(t, err, codes.FailedPrecondition)

	// An empty configured token lets nobody in, not even with an empty Bearer.
	deny := admin.UnaryAuthInterceptor(admin.NewTokens(""))
	for _, v := range []string{"Bearer ", "Bearer", ""} {
		in := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", v))
		_, err := deny(in, req, &grpc.UnaryServerInfo{}, func(context.Context, any) (any, error) { return nil, nil })
		wantCode(t, err, codes.Unauthenticated)
	}
}
