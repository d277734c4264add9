package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/authz"
	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// checkError asserts that r is a JSON error answer with status and code.
func checkError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("content-type %q, want application/json", ct)
	}
	var b errorBody
	if err := json.Unmarshal([]byte(r.body), &b); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if b.Error.Code != code || b.Error.Message == "" {
		t.Errorf("error %+v, want code %q and a message", b.Error, code)
	}
}

func TestHTTPErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	acct, err := e.client.CreateAccount(ctx, &adminv1.CreateAccountRequest{Name: "acme", Balance: 100})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CreditAccount(ctx, &adminv1.CreditAccountRequest{Account: acct.Id, Amount: 10, IdempotencyKey: "once"}); err != nil {
		t.Fatal(err)
	}
	key, err := e.client.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	revoked, err := e.client.CreateKey(ctx, &adminv1.CreateKeyRequest{Account: acct.Id, Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.RevokeKey(ctx, &adminv1.RevokeKeyRequest{Key: revoked.Key.Id}); err != nil {
		t.Fatal(err)
	}
	a := "/v1/accounts/" + acct.Id
	k := "/v1/keys/" + key.Key.Id
	otherAcct := authz.NewAccountID(e.clock.Now())

	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"malformed JSON", "POST", "/v1/accounts", `{"name":`, 400, "invalid_argument"},
		{"JSON array body", "POST", "/v1/accounts", `[]`, 400, "invalid_argument"},
		{"unknown field", "POST", "/v1/accounts", `{"name":"x","colour":"red"}`, 400, "invalid_argument"},
		{"empty name", "POST", "/v1/accounts", `{"name":""}`, 400, "invalid_argument"},
		{"blank name", "POST", "/v1/accounts", `{"name":"   "}`, 400, "invalid_argument"},
		{"missing body", "POST", "/v1/accounts", ``, 400, "invalid_argument"},
		{"negative opening balance", "POST", "/v1/accounts", `{"name":"x","balance":-1}`, 400, "invalid_argument"},
		{"int64 not a number", "POST", "/v1/accounts", `{"name":"x","balance":"lots"}`, 400, "invalid_argument"},
		{"negative amount", "POST", a + ":credit", `{"amount":-5}`, 400, "invalid_argument"},
		{"zero amount", "POST", a + ":debit", `{"amount":0}`, 400, "invalid_argument"},
		{"debit attributed to a bad key id", "POST", a + ":debit", `{"amount":1,"key":"sk-not-a-key-id"}`, 400, "invalid_argument"},
		{"body names another account", "POST", a + ":credit", `{"account":"` + otherAcct + `","amount":1}`, 400, "invalid_argument"},
		{"bad account id", "GET", "/v1/accounts/acme", ``, 400, "invalid_argument"},
		{"bad key id", "GET", "/v1/keys/acct_nope", ``, 400, "invalid_argument"},
		{"bad id with verb", "POST", "/v1/keys/nope:revoke", ``, 400, "invalid_argument"},
		{"expiry in the past", "POST", a + "/keys", `{"name":"k","expireTime":"2020-01-01T00:00:00Z"}`, 400, "invalid_argument"},
		{"expiry not a timestamp", "POST", a + "/keys", `{"name":"k","expireTime":"tomorrow"}`, 400, "invalid_argument"},
		{"key without name", "POST", a + "/keys", `{}`, 400, "invalid_argument"},
		{"negative grace period", "POST", k + ":rotate", `{"gracePeriod":"-5s"}`, 400, "invalid_argument"},
		{"negative page size", "GET", "/v1/accounts?pageSize=-1", ``, 400, "invalid_argument"},
		{"page size not a number", "GET", a + "/ledger?pageSize=ten", ``, 400, "invalid_argument"},
		{"unknown query parameter", "GET", a + "/keys?colour=red", ``, 400, "invalid_argument"},
		{"repeated query parameter", "GET", "/v1/accounts?pageSize=1&pageSize=2", ``, 400, "invalid_argument"},
		{"bad page token", "GET", "/v1/accounts?pageToken=garbage", ``, 400, "invalid_argument"},

		{"unknown account", "GET", "/v1/accounts/" + otherAcct, ``, 404, "not_found"},
		{"credit unknown account", "POST", "/v1/accounts/" + otherAcct + ":credit", `{"amount":1}`, 404, "not_found"},
		{"keys of unknown account", "POST", "/v1/accounts/" + otherAcct + "/keys", `{"name":"k"}`, 404, "not_found"},
		{"unknown key", "GET", "/v1/keys/" + authz.NewKeyID(e.clock.Now()), ``, 404, "not_found"},
		{"unknown route", "GET", "/v2/accounts", ``, 404, "not_found"},
		{"unknown verb", "POST", a + ":delete", ``, 404, "not_found"},

		{"idempotency key reused with another amount", "POST", a + ":credit", `{"amount":11,"idempotencyKey":"once"}`, 409, "conflict"},
		{"idempotency key reused by a debit", "POST", a + ":debit", `{"amount":10,"idempotencyKey":"once"}`, 409, "conflict"},
		{"rotate a revoked key", "POST", "/v1/keys/" + revoked.Key.Id + ":rotate", `{}`, 409, "conflict"},

		{"DELETE an account", "DELETE", a, ``, 405, "method_not_allowed"},
		{"GET a verb", "GET", a + ":credit", ``, 405, "method_not_allowed"},
		{"PUT the account list", "PUT", "/v1/accounts", `{}`, 405, "method_not_allowed"},

		{"body over 1 MiB", "POST", "/v1/accounts", bigBody(), 413, "payload_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(t, tc.method, tc.path, tc.body)
			checkError(t, r, tc.status, tc.code)
			if tc.status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}

	// None of the failures changed anything.
	got, err := e.client.GetAccount(ctx, &adminv1.GetAccountRequest{Account: acct.Id})
	if err != nil {
		t.Fatal(err)
	}
	if got.Balance != 110 {
		t.Errorf("balance %d after failed requests, want 110", got.Balance)
	}
	list, err := e.client.ListAccounts(ctx, &adminv1.ListAccountsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Accounts) != 1 {
		t.Errorf("%d accounts after failed creations, want 1", len(list.Accounts))
	}
}

func TestHTTPAuth(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ name, authorization string }{
		{"no header", ""},
		{"wrong token", "Bearer not-the-token"},
		{"token prefix", "Bearer " + testToken[:len(testToken)-1]},
		{"token with suffix", "Bearer " + testToken + "x"},
		{"basic scheme", "Basic " + testToken},
		{"no scheme", testToken},
		{"empty bearer", "Bearer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Even unknown routes and wrong methods say 401 first.
			for _, target := range []struct{ method, path string }{{"GET", "/v1/accounts"}, {"POST", "/v1/accounts"}, {"DELETE", "/nowhere"}} {
				r := e.callWith(t, target.method, target.path, `{"name":"x"}`, tc.authorization)
				checkError(t, r, http.StatusUnauthorized, "unauthenticated")
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="keygate-admin"` {
					t.Errorf("www-authenticate %q", got)
				}
			}
		})
	}
	r := e.callWith(t, "GET", "/v1/accounts", "", "bEaReR   "+testToken)
	if r.status != http.StatusOK {
		t.Errorf("scheme in mixed case: status %d, want 200: %s", r.status, r.body)
	}
	r = e.callWith(t, "GET", "/v1/accounts", "", "Bearer  ")
	checkError(t, r, http.StatusUnauthorized, "unauthenticated")
}

func TestHTTPEmptyTokenAuthenticatesNobody(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(admin.NewHandler(e.svc, admin.NewTokens()))
	defer srv.Close()
	for _, authorization := range []string{"", "Bearer ", "Bearer  ", "Bearer x"} {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/accounts", nil)
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("empty admin token, Authorization %q: status %d, want 401", authorization, res.StatusCode)
		}
	}
}

func TestHTTPAccountZeroBalanceAndHeaders(t *testing.T) {
	e := newEnv(t)
	r := e.call(t, "POST", "/v1/accounts", `{"name":"zero"}`)
	var acct adminv1.Account
	decode(t, r, &acct)
	for _, want := range []string{`"balance":"0"`, `"status":"active"`, `"createTime":"2026-03-01T12:00:00Z"`} {
		if !strings.Contains(strings.ReplaceAll(r.body, " ", ""), want) {
			t.Errorf("answer %s lacks %s", r.body, want)
		}
	}
	for h, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	r = e.call(t, "GET", "/v1/accounts/"+acct.Id+"/keys", "")
	if !strings.Contains(strings.ReplaceAll(r.body, " ", ""), `"keys":[]`) {
		t.Errorf("empty key list %s, want \"keys\":[]", r.body)
	}
}

func TestHTTPIdempotentReplay(t *testing.T) {
	e := newEnv(t)
	// int64 fields given as JSON strings, as proto3 JSON allows.
	var acct adminv1.Account
	decode(t, e.call(t, "POST", "/v1/accounts", `{"name":"acme","balance":"100"}`), &acct)
	if acct.Balance != 100 {
		t.Fatalf("opening balance %d, want 100", acct.Balance)
	}
	credit := "/v1/accounts/" + acct.Id + ":credit"
	first := e.call(t, "POST", credit, `{"amount":"50","idempotencyKey":"topup-1"}`)
	var entry adminv1.LedgerEntry
	decode(t, first, &entry)
	if entry.Kind != "credit" || entry.Amount != 50 || entry.BalanceAfter != 150 || entry.Seq != 2 || entry.IdempotencyKey != "topup-1" {
		t.Fatalf("entry %v", &entry)
	}

	e.clock.Advance(time.Minute)
	again := e.call(t, "POST", credit, `{"amount":50,"idempotencyKey":"topup-1"}`)
	if again.status != http.StatusOK || again.body != first.body {
		t.Errorf("replay answered %d %s, want the first entry %s", again.status, again.body, first.body)
	}
	checkError(t, e.call(t, "POST", credit, `{"amount":51,"idempotencyKey":"topup-1"}`), http.StatusConflict, "conflict")

	var got adminv1.Account
	decode(t, e.call(t, "GET", "/v1/accounts/"+acct.Id, ""), &got)
	if got.Balance != 150 {
		t.Errorf("balance %d after a credit and its replays, want 150", got.Balance)
	}
	var ledger adminv1.ListLedgerResponse
	decode(t, e.call(t, "GET", "/v1/accounts/"+acct.Id+"/ledger", ""), &ledger)
	if len(ledger.Entries) != 2 || ledger.Entries[0].Kind != "open" || !proto.Equal(ledger.Entries[1], &entry) {
		t.Errorf("ledger %v, want the opening entry and %v", ledger.Entries, &entry)
	}
}

func TestHTTPSecretShownOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var acct adminv1.Account
	decode(t, e.call(t, "POST", "/v1/accounts", `{"name":"acme","balance":10}`), &acct)
	keys := "/v1/accounts/" + acct.Id + "/keys"

	var created adminv1.CreateKeyResponse
	decode(t, e.call(t, "POST", keys, `{"name":"ci","expireTime":"2026-04-01T00:00:00Z"}`), &created)
	secret := created.Secret
	if !authz.ValidSecret(secret) {
		t.Fatalf("secret %q is not a well-formed key", secret)
	}
	if k := created.Key; k.Hint != authz.SecretHint(secret) || k.State != "active" || k.Name != "ci" || k.AccountId != acct.Id ||
		!k.ExpireTime.AsTime().Equal(time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("created key %v", k)
	}
	// The store answers for the secret: it has its hash.
	if c, found, err := e.store.LookupKey(ctx, authz.HashSecret(secret)); err != nil || !found || c.KeyID != created.Key.Id {
		t.Fatalf("LookupKey(secret) = %v, %v, %v", c, found, err)
	}

	// Every later answer about the key is without its secret.
	e.mu.Lock()
	e.bodies = nil
	e.mu.Unlock()
	k := "/v1/keys/" + created.Key.Id
	var got adminv1.Key
	decode(t, e.call(t, "GET", k, ""), &got)
	if !proto.Equal(&got, created.Key) {
		t.Errorf("GetKey %v, want %v", &got, created.Key)
	}
	decode(t, e.call(t, "GET", keys, ""), &adminv1.ListKeysResponse{})
	var rotated adminv1.RotateKeyResponse
	decode(t, e.call(t, "POST", k+":rotate", `{"gracePeriod":"60s"}`), &rotated)
	decode(t, e.call(t, "GET", k, ""), &adminv1.Key{})
	decode(t, e.call(t, "POST", k+":revoke", ""), &adminv1.Key{})
	decode(t, e.call(t, "GET", keys, ""), &adminv1.ListKeysResponse{})
	e.assertNeverAnswered(t, secret)
	e.assertNeverAnswered(t, secret[len(authz.SecretPrefix):len(authz.SecretPrefix)+20])
	if rotated.Secret == "" || rotated.Secret == secret {
		t.Fatalf("rotation gave secret %q", rotated.Secret)
	}

	// The rotated secret, too, is shown once.
	e.mu.Lock()
	e.bodies = nil
	e.mu.Unlock()
	decode(t, e.call(t, "GET", "/v1/keys/"+rotated.Key.Id, ""), &adminv1.Key{})
	decode(t, e.call(t, "GET", keys, ""), &adminv1.ListKeysResponse{})
	e.assertNeverAnswered(t, rotated.Secret)
}

func TestHTTPRotateWithGracePeriod(t *testing.T) {
	e := newEnv(t)
	var acct adminv1.Account
	decode(t, e.call(t, "POST", "/v1/accounts", `{"name":"acme","balance":10}`), &acct)
	var created adminv1.CreateKeyResponse
	decode(t, e.call(t, "POST", "/v1/accounts/"+acct.Id+"/keys", `{"name":"prod","expireTime":"2027-01-01T00:00:00Z"}`), &created)
	old := "/v1/keys/" + created.Key.Id

	start := e.clock.Now()
	var rot adminv1.RotateKeyResponse
	decode(t, e.call(t, "POST", old+":rotate", `{"gracePeriod":"3600s"}`), &rot)
	if rot.Key.Name != "prod" || rot.Key.AccountId != acct.Id || rot.Key.State != "active" || rot.Key.ExpireTime != nil {
		t.Errorf("new key %v: want the same name and account, active, no expiry", rot.Key)
	}
	if p := rot.Previous; p.Id != created.Key.Id || p.State != "active" || p.ReplacedBy != rot.Key.Id ||
		!p.ExpireTime.AsTime().Equal(start.Add(time.Hour)) {
		t.Errorf("previous key %v: want active until %s, replaced by %s", p, start.Add(time.Hour), rot.Key.Id)
	}

	e.clock.Advance(time.Hour)
	var prev adminv1.Key
	decode(t, e.call(t, "GET", old, ""), &prev)
	if prev.State != "expired" {
		t.Errorf("old key after its grace period is %q, want expired", prev.State)
	}
	checkError(t, e.call(t, "POST", old+":rotate", ``), http.StatusConflict, "conflict")

	// Without a grace period the old key stops at once.
	var rot2 adminv1.RotateKeyResponse
	decode(t, e.call(t, "POST", "/v1/keys/"+rot.Key.Id+":rotate", ``), &rot2)
	if rot2.Previous.State == "active" {
		t.Error("previous key is still active after a rotation without grace")
	}
}
