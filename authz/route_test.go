package authz_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
	"github.com/keygate/keygate/store/storetest"
)

func TestParseSources(t *testing.T) {
	all := authz.SourcesOf(authz.AllSources()...)
	for _, c := range []struct {
		list string
		want authz.Sources
	}{
		{"authorization", authz.SourcesOf(authz.SourceAuthorization)},
		{"X-Api-Key", authz.SourcesOf(authz.SourceXAPIKey)},
		{"api-key , authorization", authz.SourcesOf(authz.SourceAPIKey, authz.SourceAuthorization)},
		{"api-key,x-api-key,authorization,api-key", all},
	} {
		got, err := authz.ParseSources(c.list)
		if err != nil || got != c.want {
			t.Errorf("ParseSources(%q) = %v, %v; want %v", c.list, got, err, c.want)
		}
		if again, err := authz.ParseSources(got.String()); err != nil || again != got {
			t.Errorf("ParseSources(%q) = %v, %v; want %v back", got.String(), again, err, got)
		}
	}
	for _, list := range []string{"", " ", "authorization,", "x-api-kye", "proxy-authorization", "authorization;x-api-key"} {
		if got, err := authz.ParseSources(list); err == nil {
			t.Errorf("ParseSources(%q) = %v, want an error", list, got)
		}
	}
	if got := all.Headers(); strings.Join(got, " ") != "authorization x-api-key api-key" {
		t.Errorf("Headers() = %q, want all three in Source order", got)
	}
}

func TestParseRoute(t *testing.T) {
	for _, c := range []struct {
		credentials, style string
		want               authz.Route
	}{
		{"", "", authz.Route{}},
		{"x-api-key", "", authz.Route{Sources: authz.SourcesOf(authz.SourceXAPIKey)}},
		{"", "Anthropic", authz.Route{Style: authz.StyleAnthropic}},
		{"authorization", "openai", authz.Route{Sources: authz.SourcesOf(authz.SourceAuthorization), Style: authz.StyleOpenAI}},
		{"bogus", "openai", authz.Route{Style: authz.StyleOpenAI, Invalid: true}},
		{"x-api-key", "xml", authz.Route{Sources: authz.SourcesOf(authz.SourceXAPIKey), Invalid: true}},
	} {
		if got := authz.ParseRoute(c.credentials, c.style); got != c.want {
			t.Errorf("ParseRoute(%q, %q) = %+v, want %+v", c.credentials, c.style, got, c.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { authz.ParseRoute("authorization, x-api-key", "anthropic") }); n != 0 {
		t.Errorf("ParseRoute allocates %v times, want 0", n)
	}
}

// TestCredentialSources decides requests that carry keys in several headers,
// on routes that accept some of them, against a real bbolt store.
func TestCredentialSources(t *testing.T) {
	ctx := context.Background()
	clock := storetest.NewClock(testTime)
	store, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"), bolt.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	acct, err := store.CreateAccount(ctx, "acme", 100)
	if err != nil {
		t.Fatal(err)
	}
	key := func() (string, authz.Key) {
		secret := authz.NewSecret()
		k, err := store.CreateKey(ctx, authz.NewKey{AccountID: acct.ID, Name: "k", Hash: authz.HashSecret(secret), Hint: authz.SecretHint(secret)})
		if err != nil {
			t.Fatal(err)
		}
		return secret, k
	}
	good, goodKey := key()
	other, _ := key()

	var (
		xAPIKey   = authz.SourcesOf(authz.SourceXAPIKey)
		all       = authz.SourcesOf(authz.AllSources()...)
		anthropic = authz.Route{Style: authz.StyleAnthropic}
	)
	for _, c := range []struct {
		name  string
		req   authz.Request
		route authz.Sources // the Authorizer's default Sources; 0 for DefaultRoute's
		want  authz.Reason
	}{
		{"x-api-key alone, default route", authz.Request{XAPIKey: good}, 0, authz.ReasonNoKey},
		{"x-api-key, route accepts it", authz.Request{XAPIKey: good, Route: authz.Route{Sources: xAPIKey}}, 0, authz.ReasonAllowed},
		{"api-key, server default all", authz.Request{APIKey: " " + good + "\t"}, all, authz.ReasonAllowed},
		{"route narrows the server default", authz.Request{Authorization: "Bearer " + good, Route: authz.Route{Sources: xAPIKey}}, all, authz.ReasonNoKey},
		{"ignored header may differ", authz.Request{Authorization: "Bearer " + other, XAPIKey: good, Route: authz.Route{Sources: xAPIKey}}, 0, authz.ReasonAllowed},
		{"three agree", authz.Request{Authorization: "bearer " + good, XAPIKey: good, APIKey: good}, all, authz.ReasonAllowed},
		{"empty ones do not count", authz.Request{Authorization: "Bearer ", XAPIKey: good, APIKey: " "}, all, authz.ReasonAllowed},
		{"two keys", authz.Request{Authorization: "Bearer " + good, XAPIKey: other}, all, authz.ReasonConflictingKeys},
		{"key and garbage", authz.Request{XAPIKey: good, APIKey: "hunter2"}, all, authz.ReasonConflictingKeys},
		{"key and Basic", authz.Request{Authorization: "Basic Zm9vOmJhcg==", APIKey: good}, all, authz.ReasonConflictingKeys},
		{"Bearer in x-api-key", authz.Request{XAPIKey: "Bearer " + good}, all, authz.ReasonMalformedKey},
		{"oversized x-api-key", authz.Request{XAPIKey: strings.Repeat("a", authz.MaxAuthorizationLen+1)}, all, authz.ReasonMalformedKey},
		{"unknown key in api-key", authz.Request{APIKey: authz.NewSecret()}, all, authz.ReasonUnknownKey},
		{"Anthropic style: Bearer, as its SDKs send it since 2026-10", authz.Request{Authorization: "Bearer " + good, Route: anthropic}, 0, authz.ReasonAllowed},
		{"Anthropic style: x-api-key, as its older SDKs send it", authz.Request{XAPIKey: good, Route: anthropic}, 0, authz.ReasonAllowed},
		{"Anthropic style: both, the same key", authz.Request{Authorization: "Bearer " + good, XAPIKey: good, Route: anthropic}, 0, authz.ReasonAllowed},
		{"Anthropic style: two different keys", authz.Request{Authorization: "Bearer " + good, XAPIKey: other, Route: anthropic}, 0, authz.ReasonConflictingKeys},
		{"Anthropic style: api-key is not read", authz.Request{APIKey: good, Route: anthropic}, 0, authz.ReasonNoKey},
		{"bad route", authz.Request{Authorization: "Bearer " + good, Route: authz.Route{Invalid: true}}, 0, authz.ReasonBadRoute},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := authz.NewAuthorizer(store, clock.Now)
			if c.route != 0 {
				a = a.WithDefaults(authz.Route{Sources: c.route})
			}
			d, err := a.Authorize(ctx, c.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Reason != c.want {
				t.Fatalf("Reason = %v, want %v", d.Reason, c.want)
			}
			if d.Allowed() && d.KeyID != goodKey.ID {
				t.Errorf("allowed with key %q, want %q", d.KeyID, goodKey.ID)
			}
			if d.Route.Sources == 0 || d.Route.Style == 0 {
				t.Errorf("Decision.Route = %+v, want every field set", d.Route)
			}
		})
	}
}

func TestDecisionRoute(t *testing.T) {
	ctx := context.Background()
	a := authz.NewAuthorizer(nil, nil).WithDefaults(authz.Route{Style: authz.StyleAnthropic})
	for _, c := range []struct {
		route, want authz.Route
	}{
		// Anthropic's SDKs send x-api-key or Authorization, by release.
		{authz.Route{}, authz.Route{Sources: authz.SourcesOf(authz.SourceAuthorization, authz.SourceXAPIKey), Style: authz.StyleAnthropic}},
		{authz.Route{Style: authz.StyleOpenAI}, openAIRoute},
		{authz.Route{Sources: authz.SourcesOf(authz.SourceAPIKey)}, authz.Route{Sources: authz.SourcesOf(authz.SourceAPIKey), Style: authz.StyleAnthropic}},
	} {
		// No header: decided without a lookup, so a nil index does.
		d, err := a.Authorize(ctx, authz.Request{Route: c.route})
		if err != nil || d.Route != c.want || d.Reason != authz.ReasonNoKey {
			t.Errorf("route %+v: %+v, %v; want route %+v", c.route, d, err, c.want)
		}
	}
}
