package admin_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keygate/keygate/admin"
)

// TestTokensRotate rotates the admin token on a running handler: the new
// token is added, both work, the old one is dropped and stops working.
func TestTokensRotate(t *testing.T) {
	e := newEnv(t)
	tokens := admin.NewTokens("old-token")
	srv := httptest.NewServer(admin.NewHandler(e.svc, tokens))
	defer srv.Close()
	status := func(token string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/v1/accounts", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for _, step := range []struct {
		set      []string
		old, new int
	}{
		{nil, 200, 401},
		{[]string{"new-token", "old-token"}, 200, 200},
		{[]string{"new-token"}, 401, 200},
		{[]string{}, 401, 401},
		{[]string{"", "new-token", ""}, 401, 200},
	} {
		if step.set != nil {
			tokens.Set(step.set...)
		}
		if got := status("old-token"); got != step.old {
			t.Errorf("tokens %q: old token answered %d, want %d", step.set, got, step.old)
		}
		if got := status("new-token"); got != step.new {
			t.Errorf("tokens %q: new token answered %d, want %d", step.set, got, step.new)
		}
	}
	if got := status(""); got != 401 {
		t.Errorf("empty token answered %d", got)
	}
	var zero admin.Tokens
	z := httptest.NewServer(admin.NewHandler(e.svc, &zero))
	defer z.Close()
	req, _ := http.NewRequest("GET", z.URL+"/v1/accounts", nil)
	req.Header.Set("Authorization", "Bearer x")
	if res, err := z.Client().Do(req); err != nil || res.StatusCode != 401 {
		t.Errorf("zero Tokens: %v, %v; want 401", res, err)
	}
}
