package admin_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/admin"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

func TestClient(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client

	acct, err := c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if acct.Balance != 0 || acct.Status != "active" || acct.Name != "acme" {
		t.Errorf("created %v", acct)
	}
	e.clock.Advance(time.Millisecond) // ids sort by creation time to the millisecond
	second, err := c.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "globex", Balance: 5})
	if err != nil {
		t.Fatal(err)
	}

	page1, err := c.ListAccounts(ctx, &adminv1.ListAccountsRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(page1.Accounts) != 1 || page1.Accounts[0].Id != acct.Id || page1.NextPageToken == "" {
		t.Fatalf("first page %v", page1)
	}
	page2, err := c.ListAccounts(ctx, &adminv1.ListAccountsRequest{PageSize: 1, PageToken: page1.NextPageToken})
	if err != nil {
		t.Fatal(err)
	}
	if len(page2.Accounts) != 1 || page2.Accounts[0].Id != second.Id {
		t.Fatalf("second page %v", page2)
	}

	credit, err := c.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 100, IdempotencyKey: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if credit.BalanceAfter != 100 || credit.Kind != "credit" {
		t.Errorf("credit %v", credit)
	}
	created, err := c.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "ci", ExpireTime: timestamppb.New(e.clock.Now().Add(24 * time.Hour))})
	if err != nil {
		t.Fatal(err)
	}
	debit, err := c.DebitAccount(ctx, &adminv1.DebitAccountRequest{Account: acct.Id, Amount: 30, Key: created.Key.Id})
	if err != nil {
		t.Fatal(err)
	}
	if debit.BalanceAfter != 70 || debit.Kind != "debit" || debit.KeyId != created.Key.Id {
		t.Errorf("debit %v", debit)
	}
	ledger, err := c.ListLedger(ctx, &adminv1.ListLedgerRequest{Account: acct.Id})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, en := range ledger.Entries {
		kinds = append(kinds, en.Kind)
	}
	if strings.Join(kinds, ",") != "credit,debit" { // an opening balance of zero is no entry
		t.Errorf("ledger kinds %v", kinds)
	}

	disabled, err := c.DisableAccount(ctx, &adminv1.DisableAccountRequest{Account: acct.Id})
	if err != nil || disabled.Status != "disabled" {
		t.Errorf("DisableAccount = %v, %v", disabled, err)
	}
	enabled, err := c.EnableAccount(ctx, &adminv1.EnableAccountRequest{Account: acct.Id})
	if err != nil || enabled.Status != "active" {
		t.Errorf("EnableAccount = %v, %v", enabled, err)
	}
	got, err := c.GetAccount(ctx, &adminv1.GetAccountRequest{Account: acct.Id})
	if err != nil || got.Balance != 70 || got.Status != "active" {
		t.Errorf("GetAccount = %v, %v", got, err)
	}

	key, err := c.GetKey(ctx, &adminv1.GetKeyRequest{Key: created.Key.Id})
	if err != nil || key.Hint != created.Key.Hint || key.State != "active" {
		t.Errorf("GetKey = %v, %v", key, err)
	}
	rotated, err := c.RotateKey(ctx, &adminv1.RotateKeyRequest{Key: created.Key.Id, GracePeriod: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Secret == "" || rotated.Previous.ReplacedBy != rotated.Key.Id {
		t.Errorf("RotateKey = %v", rotated)
	}
	revoked, err := c.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: created.Key.Id})
	if err != nil || revoked.State != "revoked" || revoked.RevokeTime == nil {
		t.Errorf("RevokeKey = %v, %v", revoked, err)
	}
	keys, err := c.ListKeys(ctx, &adminv1.ListKeysRequest{Account: acct.Id})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, k := range keys.Keys {
		states[k.Id] = k.State
	}
	if len(states) != 2 || states[created.Key.Id] != "revoked" || states[rotated.Key.Id] != "active" {
		t.Errorf("ListKeys states %v", states)
	}
}

func TestClientErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	_, err := e.client.GetAccount(ctx, &adminv1.GetAccountRequest{Account: "acct_00000000000000000000000000"})
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusNotFound || apiErr.Code != "not_found" || apiErr.Message == "" {
		t.Errorf("unknown account: %v", err)
	}

	_, err = e.client.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "x", Balance: -1})
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusBadRequest || apiErr.Code != "invalid_argument" {
		t.Errorf("negative balance: %v", err)
	}

	wrong := admin.NewClient(e.srv.URL+"/", "not-the-token", nil)
	_, err = wrong.ListAccounts(ctx, &adminv1.ListAccountsRequest{})
	if !errors.As(err, &apiErr) || apiErr.HTTPStatus != http.StatusUnauthorized || apiErr.Code != "unauthenticated" {
		t.Errorf("wrong token: %v", err)
	}
	if strings.Contains(err.Error(), "not-the-token") {
		t.Errorf("error %q shows the token", err)
	}

	if _, err := e.client.GetKey(ctx, &adminv1.GetKeyRequest{}); err == nil || errors.As(err, &apiErr) {
		t.Errorf("empty key id: %v, want a local error", err)
	}

	// A server that is not there: the error names the URL.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + lis.Addr().String()
	lis.Close()
	_, err = admin.NewClient(url, testToken, nil).ListAccounts(ctx, &adminv1.ListAccountsRequest{})
	if err == nil || !strings.Contains(err.Error(), url+"/v1/accounts") || errors.As(err, &apiErr) {
		t.Errorf("no server: %v", err)
	}
}
