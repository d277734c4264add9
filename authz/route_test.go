package authz_test

import (
	"context"
	"encoding/json"
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
		xAPIKey = authz.SourcesOf(authz.SourceXAPIKey)
		all     = authz.SourcesOf(authz.AllSources()...)
	)
	for _, c := range []struct {
		name  string
		req   authz.Request
		route authz.Sources // the Authorizer's default Sources; 0 for DefaultRoute's
		want  authz.Reason
	}{
		{"x-api-key alone, default route", authz.Request{XAPIKey: good}, 0, authz.ReasonNoCredential},
		{"x-api-key, route accepts it", authz.Request{XAPIKey: good, Route: authz.Route{Sources: xAPIKey}}, 0, authz.ReasonAllowed},
		{"api-key, server default all", authz.Request{APIKey: " " + good + "\t"}, all, authz.ReasonAllowed},
		{"route narrows the server default", authz.Request{Authorization: "Bearer " + good, Route: authz.Route{Sources: xAPIKey}}, all, authz.ReasonNoCredential},
		{"ignored header may differ", authz.Request{Authorization: "Bearer " + other, XAPIKey: good, Route: authz.Route{Sources: xAPIKey}}, 0, authz.ReasonAllowed},
		{"three agree", authz.Request{Authorization: "bearer " + good, XAPIKey: good, APIKey: good}, all, authz.ReasonAllowed},
		{"empty ones do not count", authz.Request{Authorization: "Bearer ", XAPIKey: good, APIKey: " "}, all, authz.ReasonAllowed},
		{"two keys", authz.Request{Authorization: "Bearer " + good, XAPIKey: other}, all, authz.ReasonConflictingKeys},
		{"key and garbage", authz.Request{XAPIKey: good, APIKey: "hunter2"}, all, authz.ReasonConflictingKeys},
		{"key and Basic", authz.Request{Authorization: "Basic Zm9vOmJhcg==", APIKey: good}, all, authz.ReasonConflictingKeys},
		{"Bearer in x-api-key", authz.Request{XAPIKey: "Bearer " + good}, all, authz.ReasonMalformedKey},
		{"oversized x-api-key", authz.Request{XAPIKey: strings.Repeat("a", authz.MaxAuthorizationLen+1)}, all, authz.ReasonMalformedKey},
		{"unknown key in api-key", authz.Request{APIKey: authz.NewSecret()}, all, authz.ReasonUnknownKey},
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
		{authz.Route{}, authz.Route{Sources: authz.SourcesOf(authz.SourceAuthorization), Style: authz.StyleAnthropic}},
		{authz.Route{Style: authz.StyleOpenAI}, authz.Route{Sources: authz.SourcesOf(authz.SourceAuthorization), Style: authz.StyleOpenAI}},
		{authz.Route{Sources: authz.SourcesOf(authz.SourceAPIKey)}, authz.Route{Sources: authz.SourcesOf(authz.SourceAPIKey), Style: authz.StyleAnthropic}},
	} {
		// No header: decided without a lookup, so a nil index does.
		d, err := a.Authorize(ctx, authz.Request{Route: c.route})
		if err != nil || d.Route != c.want || d.Reason != authz.ReasonNoCredential {
			t.Errorf("route %+v: %+v, %v; want route %+v", c.route, d, err, c.want)
		}
	}
}

// TestDenials checks the shared answer table: every denial has a status
// that matches its reason, a challenge exactly on 401s, and a body of the
// route's style that carries the message and is plain ASCII, so that it also
// fits in a response header for nginx.
func TestDenials(t *testing.T) {
	if authz.DenialFor(authz.ReasonAllowed, authz.StyleOpenAI) != nil {
		t.Error("DenialFor(ReasonAllowed) is not nil")
	}
	if authz.DenialFor(authz.ReasonUnknownKey, 0) != authz.DenialFor(authz.ReasonUnknownKey, authz.StyleOpenAI) {
		t.Error("an unset style does not read as OpenAI")
	}
	for _, s := range authz.Styles() {
		for _, r := range authz.Reasons()[1:] {
			d := authz.DenialFor(r, s)
			want := 403
			switch {
			case r.Unauthenticated():
				want = 401
			case r == authz.ReasonBadRoute:
				want = 500
			}
			if d.Status != want {
				t.Errorf("%v/%v: status %d, want %d", s, r, d.Status, want)
			}
			if (d.Challenge != "") != (d.Status == 401) || (d.Challenge != "" && !strings.HasPrefix(d.Challenge, `Bearer realm="keygate"`)) {
				t.Errorf("%v/%v: challenge %q on a %d", s, r, d.Challenge, d.Status)
			}
			for i := 0; i < len(d.Body); i++ {
				if d.Body[i] < ' ' || d.Body[i] > '~' {
					t.Errorf("%v/%v: body byte %d is %q, not printable ASCII", s, r, i, d.Body[i])
					break
				}
			}
			var body struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
					Code    string `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(d.Body), &body); err != nil {
				t.Fatalf("%v/%v: body %s: %v", s, r, d.Body, err)
			}
			if body.Error.Message != d.Message || d.Message == "" {
				t.Errorf("%v/%v: message %q, body %s", s, r, d.Message, d.Body)
			}
			if anthropic := s == authz.StyleAnthropic; anthropic != (body.Type == "error") || anthropic == (body.Error.Code != "") {
				t.Errorf("%v/%v: body %s is not in the %v style", s, r, d.Body, s)
			}
		}
	}
}
