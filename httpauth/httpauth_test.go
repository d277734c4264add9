package httpauth_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/checkmetrics"
	"github.com/keygate/keygate/checkmetrics/checkmetricstest"
	"github.com/keygate/keygate/httpauth"
	"github.com/keygate/keygate/store/bolt"
)

// fixture is a real bbolt store with keys in the states a check tells apart,
// and a Handler on a real HTTP server on a loopback port.
type fixture struct {
	store                        *bolt.Store
	metrics                      *prometheus.Registry
	url                          string
	active, other, revoked, zero string // secrets
	activeKey                    authz.Key
	zeroKey                      authz.Key
}

func newFixture(t *testing.T, prefix string) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f := &fixture{store: s, metrics: prometheus.NewRegistry()}
	account := func(balance int64) authz.Account {
		a, err := s.CreateAccount(ctx, "acme", balance)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	key := func(a authz.Account) (string, authz.Key) {
		secret := authz.NewSecret()
		k, err := s.CreateKey(ctx, authz.NewKey{AccountID: a.ID, Name: "k", Hash: authz.HashSecret(secret), Hint: authz.SecretHint(secret)})
		if err != nil {
			t.Fatal(err)
		}
		return secret, k
	}
	rich := account(100)
	f.active, f.activeKey = key(rich)
	f.other, _ = key(rich)
	var revoked authz.Key
	f.revoked, revoked = key(rich)
	if _, err := s.RevokeKey(ctx, revoked.ID); err != nil {
		t.Fatal(err)
	}
	f.zero, f.zeroKey = key(account(0))

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: httpauth.NewHandler(authz.NewAuthorizer(s, nil), prefix, f.metrics), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	f.url = "http://" + lis.Addr().String()
	return f
}

// reply is what a proxy reads from a check's response.
type reply struct {
	status                 int
	account, key, remove   string
	challenge, body, inHdr string
}

func (f *fixture) check(t *testing.T, method, path string, headers [][2]string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if (resp.StatusCode == 401 || resp.StatusCode == 403 || resp.StatusCode == 500) && resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("content-type %q on a %d", resp.Header.Get("Content-Type"), resp.StatusCode)
	}
	return reply{
		status:    resp.StatusCode,
		account:   resp.Header.Get("X-Account-Id"),
		key:       resp.Header.Get("X-Key-Id"),
		remove:    resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"),
		challenge: resp.Header.Get("Www-Authenticate"),
		body:      string(body),
		inHdr:     resp.Header.Get("X-Keygate-Error"),
	}
}

func TestHandler(t *testing.T) {
	f := newFixture(t, "/ext_authz")
	allowed := reply{status: 200, account: f.activeKey.AccountID, key: f.activeKey.ID, remove: "authorization"}
	deny := func(r authz.Reason, s authz.Style) reply {
		d := answer.DenialFor(r, authz.Route{Style: s})
		return reply{status: d.Status, challenge: d.Challenge, body: d.Body}
	}
	// An Anthropic route that sets only the style accepts both headers
	// Anthropic's SDKs send, and strips both.
	anthropicStyle := [][2]string{{httpauth.HeaderErrorStyle, "anthropic"}}
	allowedEither := reply{status: 200, account: f.activeKey.AccountID, key: f.activeKey.ID, remove: "authorization, x-api-key"}
	withHeader := func(a reply) reply { a.inHdr = a.body; return a }
	// Envoy's HTTP service: the original method, the prefix and the
	// original path; Authorization always, other headers when allowed.
	envoyPath := "/ext_authz/v1/chat/completions?stream=true"
	// Caddy's forward_auth and Traefik's forwardAuth: a GET to a fixed
	// path, the original request in X-Forwarded-*, every client header.
	forwarded := [][2]string{{"X-Forwarded-Method", "POST"}, {"X-Forwarded-Uri", "/v1/messages"}, {"X-Forwarded-Host", "api.example.com"}, {"X-Forwarded-Proto", "https"}}
	anthropic := [][2]string{{httpauth.HeaderKeyHeaders, "x-api-key"}, {httpauth.HeaderErrorStyle, "anthropic"}}
	for _, c := range []struct {
		name    string
		method  string
		path    string
		headers [][2]string
		want    reply
	}{
		{"envoy: allowed", "POST", envoyPath, [][2]string{{"Authorization", "Bearer " + f.active}}, allowed},
		{"envoy: HEAD, prefix alone", "HEAD", "/ext_authz", [][2]string{{"Authorization", "Bearer " + f.active}}, allowed},
		{"envoy: no key", "POST", envoyPath, nil, deny(authz.ReasonNoKey, authz.StyleOpenAI)},
		{"envoy: revoked", "DELETE", envoyPath, [][2]string{{"Authorization", "Bearer " + f.revoked}}, deny(authz.ReasonRevokedKey, authz.StyleOpenAI)},
		{"envoy: zero balance", "POST", envoyPath, [][2]string{{"Authorization", "Bearer " + f.zero}}, deny(authz.ReasonInsufficientBalance, authz.StyleOpenAI)},
		{"envoy: two authorization headers", "POST", envoyPath, [][2]string{{"Authorization", "Bearer " + f.active}, {"Authorization", "Bearer " + f.active}}, deny(authz.ReasonMalformedKey, authz.StyleOpenAI)},
		{"forward auth: allowed", "GET", "/ext_authz/check", append(forwarded, [2]string{"Authorization", "bearer " + f.active}), allowed},
		{"forward auth: x-api-key not read by default", "GET", "/ext_authz/check", append(forwarded, [2]string{"X-Api-Key", f.active}), deny(authz.ReasonNoKey, authz.StyleOpenAI)},
		{"forward auth: Anthropic route", "GET", "/ext_authz/check", append(anthropic, [2]string{"X-Api-Key", f.active}, [2]string{"Authorization", "Bearer upstream-token"}),
			reply{status: 200, account: f.activeKey.AccountID, key: f.activeKey.ID, remove: "x-api-key"}},
		{"forward auth: Anthropic route, zero balance", "GET", "/ext_authz/check", append(anthropic, [2]string{"X-Api-Key", f.zero}), deny(authz.ReasonInsufficientBalance, authz.StyleAnthropic)},
		{"forward auth: Anthropic style, Bearer", "GET", "/ext_authz/check", append(anthropicStyle, [2]string{"Authorization", "Bearer " + f.active}), allowedEither},
		{"forward auth: Anthropic style, x-api-key", "GET", "/ext_authz/check", append(anthropicStyle, [2]string{"X-Api-Key", f.active}), allowedEither},
		{"forward auth: Anthropic style, no key", "GET", "/ext_authz/check", anthropicStyle, deny(authz.ReasonNoKey, authz.StyleAnthropic)},
		{"forward auth: Anthropic style, two different keys", "GET", "/ext_authz/check",
			append(anthropicStyle, [2]string{"X-Api-Key", f.active}, [2]string{"Authorization", "Bearer " + f.other}), deny(authz.ReasonConflictingKeys, authz.StyleAnthropic)},
		{"forward auth: keys that disagree", "GET", "/ext_authz/check",
			[][2]string{{httpauth.HeaderKeyHeaders, "authorization,api-key"}, {"Authorization", "Bearer " + f.active}, {"Api-Key", f.other}}, deny(authz.ReasonConflictingKeys, authz.StyleOpenAI)},
		{"forward auth: keys that agree", "GET", "/ext_authz/check",
			[][2]string{{httpauth.HeaderKeyHeaders, "authorization,api-key"}, {"Authorization", "Bearer " + f.active}, {"Api-Key", f.active}},
			reply{status: 200, account: f.activeKey.AccountID, key: f.activeKey.ID, remove: "authorization, api-key"}},
		{"nginx: body in a header on request", "GET", "/ext_authz/nginx", [][2]string{{httpauth.HeaderWantError, "1"}}, withHeader(deny(authz.ReasonNoKey, authz.StyleOpenAI))},
		{"bad route", "GET", "/ext_authz/check", [][2]string{{httpauth.HeaderErrorStyle, "xml"}, {"Authorization", "Bearer " + f.active}}, deny(authz.ReasonBadRoute, authz.StyleOpenAI)},
		{"outside the prefix", "GET", "/ext_authzfoo", [][2]string{{"Authorization", "Bearer " + f.active}}, reply{status: 404, body: "404 page not found\n"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := f.check(t, c.method, c.path, c.headers)
			if c.method == "HEAD" {
				c.want.body = ""
			}
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
	// Every check above is counted and timed, as the gRPC Check's are, but
	// the request outside the prefix, which is no check.
	checkmetricstest.Assert(t, f.metrics, checkmetrics.APIHTTP, map[string]int{
		"allowed":              7,
		"no_credential":        4,
		"revoked_key":          1,
		"insufficient_balance": 2,
		"malformed_key":        1,
		"conflicting_keys":     2,
		"bad_route":            1,
	}, 18)
}

// TestHandlerStoreFailure checks that a store that cannot answer is a 503,
// never a decision, while a request refused before any lookup is answered.
func TestHandlerStoreFailure(t *testing.T) {
	f := newFixture(t, "")
	if err := f.store.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.check(t, "GET", "/", [][2]string{{"Authorization", "Bearer " + f.active}}); got.status != http.StatusServiceUnavailable || got.account != "" {
		t.Errorf("closed store: %+v, want a bare 503", got)
	}
	if got := f.check(t, "GET", "/", [][2]string{{"Authorization", "Bearer hunter2"}}); got.status != 401 {
		t.Errorf("malformed key on a closed store: %d, want 401", got.status)
	}
	checkmetricstest.Assert(t, f.metrics, checkmetrics.APIHTTP, map[string]int{"store_error": 1, "malformed_key": 1}, 2)
}
