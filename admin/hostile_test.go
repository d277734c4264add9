package admin_test

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	adminv1 "github.com/keygate/keygate/proto/keygate/admin/v1"
)

// snapshot is everything a hostile request could change, read through the
// API itself.
type snapshot struct {
	accounts *adminv1.ListAccountsResponse
	ledgers  map[string]*adminv1.ListLedgerResponse
	keys     map[string]*adminv1.ListKeysResponse
}

func (e *env) snapshot(t *testing.T) snapshot {
	t.Helper()
	s := snapshot{accounts: new(adminv1.ListAccountsResponse), ledgers: map[string]*adminv1.ListLedgerResponse{}, keys: map[string]*adminv1.ListKeysResponse{}}
	decode(t, e.call(t, "GET", "/v1/accounts?pageSize=1000", ""), s.accounts)
	for _, a := range s.accounts.Accounts {
		s.ledgers[a.Id], s.keys[a.Id] = new(adminv1.ListLedgerResponse), new(adminv1.ListKeysResponse)
		decode(t, e.call(t, "GET", "/v1/accounts/"+a.Id+"/ledger?pageSize=1000", ""), s.ledgers[a.Id])
		decode(t, e.call(t, "GET", "/v1/accounts/"+a.Id+"/keys?pageSize=1000", ""), s.keys[a.Id])
	}
	return s
}

func (s snapshot) equal(o snapshot) bool {
	if !proto.Equal(s.accounts, o.accounts) || len(s.ledgers) != len(o.ledgers) || len(s.keys) != len(o.keys) {
		return false
	}
	for id, l := range s.ledgers {
		if !proto.Equal(l, o.ledgers[id]) || !proto.Equal(s.keys[id], o.keys[id]) {
			return false
		}
	}
	return true
}

// TestHTTPHostile sends requests meant to overflow balances, smuggle control
// characters or slip past the decoder. Each gets a 4xx JSON error naming the
// problem, and nothing in the store changes.
func TestHTTPHostile(t *testing.T) {
	e := newEnv(t)
	var rich, poor, max adminv1.Account
	decode(t, e.call(t, "POST", "/v1/accounts", `{"name":"rich","balance":100}`), &rich)
	decode(t, e.call(t, "POST", "/v1/accounts", `{"name":"poor"}`), &poor)
	decode(t, e.call(t, "POST", "/v1/accounts", `{"name":"max","balance":"`+strconv.FormatInt(math.MaxInt64, 10)+`"}`), &max)
	decode(t, e.call(t, "POST", "/v1/accounts/"+poor.Id+":debit", `{"amount":"`+strconv.FormatInt(math.MaxInt64, 10)+`"}`), &adminv1.LedgerEntry{})
	var key adminv1.CreateKeyResponse
	decode(t, e.call(t, "POST", "/v1/accounts/"+rich.Id+"/keys", `{"name":"k"}`), &key)
	before := e.snapshot(t)

	r, p, m := "/v1/accounts/"+rich.Id, "/v1/accounts/"+poor.Id, "/v1/accounts/"+max.Id
	maxInt := strconv.FormatInt(math.MaxInt64, 10)
	tooLong := strings.Repeat("a", 201)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		mention                  string // a word the message must contain
	}{
		{"credit overflows the balance", "POST", r + ":credit", `{"amount":"` + maxInt + `"}`, 400, "invalid_argument", "range"},
		{"credit of 1 on the largest balance", "POST", m + ":credit", `{"amount":1}`, 400, "invalid_argument", "range"},
		{"debit below the smallest balance", "POST", p + ":debit", `{"amount":2}`, 400, "invalid_argument", "range"},
		{"amount beyond int64, as a string", "POST", r + ":credit", `{"amount":"9223372036854775808"}`, 400, "invalid_argument", "amount"},
		{"amount beyond int64, as a number", "POST", r + ":credit", `{"amount":9223372036854775808}`, 400, "invalid_argument", "amount"},
		{"amount 1e30", "POST", r + ":credit", `{"amount":1e30}`, 400, "invalid_argument", "amount"},
		{"fractional amount", "POST", r + ":credit", `{"amount":1.5}`, 400, "invalid_argument", "amount"},
		{"opening balance beyond int64", "POST", "/v1/accounts", `{"name":"x","balance":"99999999999999999999"}`, 400, "invalid_argument", "balance"},
		{"smallest int64 amount", "POST", r + ":debit", `{"amount":"-9223372036854775808"}`, 400, "invalid_argument", "positive"},

		{"NUL in an account name", "POST", "/v1/accounts", `{"name":"a\u0000b"}`, 400, "invalid_argument", "control"},
		{"newline in an account name", "POST", "/v1/accounts", `{"name":"evil\nlevel=ERROR"}`, 400, "invalid_argument", "control"},
		{"escape sequence in an account name", "POST", "/v1/accounts", `{"name":"\u001b[31mred"}`, 400, "invalid_argument", "control"},
		{"C1 control in an account name", "POST", "/v1/accounts", `{"name":"a\u009bb"}`, 400, "invalid_argument", "control"},
		{"DEL in an account name", "POST", "/v1/accounts", `{"name":"a\u007fb"}`, 400, "invalid_argument", "control"},
		{"right-to-left override in an account name", "POST", "/v1/accounts", `{"name":"user\u202Egnp.exe"}`, 400, "invalid_argument", "control"},
		{"line separator in an account name", "POST", "/v1/accounts", `{"name":"a\u2028b"}`, 400, "invalid_argument", "control"},
		{"invalid UTF-8 in a body", "POST", "/v1/accounts", "{\"name\":\"a\xffb\"}", 400, "invalid_argument", "UTF-8"},
		{"name of 201 bytes", "POST", "/v1/accounts", `{"name":"` + tooLong + `"}`, 400, "invalid_argument", "longer"},
		{"tab in a key name", "POST", r + "/keys", `{"name":"a\tb"}`, 400, "invalid_argument", "control"},
		{"carriage return in an idempotency key", "POST", r + ":credit", `{"amount":1,"idempotencyKey":"k\r"}`, 400, "invalid_argument", "control"},
		{"NUL in an idempotency key", "POST", r + ":debit", `{"amount":1,"idempotencyKey":"\u0000"}`, 400, "invalid_argument", "control"},
		{"idempotency key of 201 bytes", "POST", r + ":credit", `{"amount":1,"idempotencyKey":"` + tooLong + `"}`, 400, "invalid_argument", "longer"},
		{"NUL in an account id", "GET", "/v1/accounts/" + url.PathEscape(rich.Id[:10]+"\x00"+rich.Id[11:]), ``, 400, "invalid_argument", "account id"},
		{"newline after an account id", "POST", "/v1/accounts/" + url.PathEscape(rich.Id+"\n") + ":credit", `{"amount":1}`, 400, "invalid_argument", "account id"},
		{"control character in a key id", "POST", "/v1/keys/" + url.PathEscape(key.Key.Id[:6]+"\x1b"+key.Key.Id[7:]) + ":revoke", ``, 400, "invalid_argument", "key id"},
		{"control character in a debit's key id", "POST", r + ":debit", `{"amount":1,"key":"key_\u0007"}`, 400, "invalid_argument", "key id"},

		{"misspelt field", "POST", r + ":credit", `{"amount":1,"idempotencyKy":"x"}`, 400, "invalid_argument", "idempotencyKy"},
		{"field of another request", "POST", r + ":credit", `{"amount":1,"key":"` + key.Key.Id + `"}`, 400, "invalid_argument", "key"},
		{"field given twice", "POST", r + ":credit", `{"amount":1,"amount":1000}`, 400, "invalid_argument", "amount"},
		{"body after the object", "POST", r + ":credit", `{"amount":1} {"amount":2}`, 400, "invalid_argument", "invalid"},
		{"body over 1 MiB", "POST", r + ":credit", `{"amount":1,"idempotencyKey":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "payload_too_large", "1 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.call(t, tc.method, tc.path, tc.body)
			checkError(t, res, tc.status, tc.code)
			if !strings.Contains(res.body, tc.mention) {
				t.Errorf("message %s does not mention %q", res.body, tc.mention)
			}
		})
	}
	if after := e.snapshot(t); !after.equal(before) {
		t.Errorf("hostile requests changed the store:\nbefore %v\nafter %v", before.accounts, after.accounts)
	}
}
