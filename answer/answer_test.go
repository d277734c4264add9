package answer_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
)

// TestMeanings checks the table: a presented token that fails is a 401, a
// known caller who may not proceed a 403, and only ReasonAllowed is a 200.
func TestMeanings(t *testing.T) {
	for _, r := range authz.Reasons() {
		m := answer.Of(r)
		if m.TokenPresented() && m.Status != 401 {
			t.Errorf("%v: a presented token that fails is a %d, want 401", r, m.Status)
		}
		if (m.Status == 200) != (r == authz.ReasonAllowed) {
			t.Errorf("%v: status %d", r, m.Status)
		}
		if r != authz.ReasonAllowed && (m.Code == "" || m.OpenAIType == "" || m.AnthropicType == "" || m.Message == "") {
			t.Errorf("%v: incomplete %+v", r, m)
		}
	}
	for _, r := range []authz.Reason{authz.ReasonAccountDisabled, authz.ReasonInsufficientBalance} {
		if answer.Of(r).Status != 403 {
			t.Errorf("%v is a %d, want 403", r, answer.Of(r).Status)
		}
	}
	for _, r := range []authz.Reason{authz.ReasonNoKey, authz.ReasonNotBearer, authz.ReasonConflictingKeys} {
		if answer.Of(r).TokenPresented() {
			t.Errorf("%v: no single token was presented", r)
		}
	}
}

// TestDenials checks every denial: a status from the table, a challenge
// exactly on 401s, and a body of the route's style that carries the message
// and is plain ASCII, so that it also fits in a response header for nginx.
func TestDenials(t *testing.T) {
	if answer.DenialFor(authz.ReasonAllowed, authz.Route{}) != nil {
		t.Error("DenialFor(ReasonAllowed) is not nil")
	}
	if answer.DenialFor(authz.ReasonUnknownKey, authz.Route{}) != answer.DenialFor(authz.ReasonUnknownKey, authz.DefaultRoute) {
		t.Error("an unset style does not read as OpenAI")
	}
	for _, s := range authz.Styles() {
		for set := authz.Sources(1); set < authz.NumSourceSets; set++ {
			for _, r := range authz.Reasons()[1:] {
				route := authz.Route{Sources: set, Style: s}
				d := answer.DenialFor(r, route)
				if d.Status != answer.Of(r).Status {
					t.Errorf("%+v/%v: status %d, want %d", route, r, d.Status, answer.Of(r).Status)
				}
				if (d.Challenge != "") != (d.Status == 401) || (d.Challenge != "" && !strings.HasPrefix(d.Challenge, `Bearer realm="keygate"`)) {
					t.Errorf("%+v/%v: challenge %q on a %d", route, r, d.Challenge, d.Status)
				}
				for i := 0; i < len(d.Body); i++ {
					if d.Body[i] < ' ' || d.Body[i] > '~' {
						t.Errorf("%+v/%v: body byte %d is %q, not printable ASCII", route, r, i, d.Body[i])
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
					t.Fatalf("%+v/%v: body %s: %v", route, r, d.Body, err)
				}
				if body.Error.Message != d.Message || d.Message == "" {
					t.Errorf("%+v/%v: message %q, body %s", route, r, d.Message, d.Body)
				}
				if anthropic := s == authz.StyleAnthropic; anthropic != (body.Type == "error") || anthropic == (body.Error.Code != "") {
					t.Errorf("%+v/%v: body %s is not in the %v style", route, r, d.Body, s)
				}
			}
		}
	}
}

// TestNoKeyNamesTheRouteHeaders checks that a request without a key is told
// every header its route accepts, and no other.
func TestNoKeyNamesTheRouteHeaders(t *testing.T) {
	for _, c := range []struct {
		route authz.Route
		want  string
	}{
		{authz.Route{Style: authz.StyleOpenAI}, `No API key was provided. Send your key in the Authorization header: "Authorization: Bearer YOUR_API_KEY".`},
		{authz.Route{Sources: authz.SourcesOf(authz.SourceXAPIKey), Style: authz.StyleAnthropic}, `No API key was provided. Send your key in the x-api-key header: "x-api-key: YOUR_API_KEY".`},
		{authz.Route{Style: authz.StyleAnthropic}, `No API key was provided. Send your key in one of these headers: "Authorization: Bearer YOUR_API_KEY" or "x-api-key: YOUR_API_KEY".`},
		{authz.Route{Sources: authz.SourcesOf(authz.AllSources()...)}, `No API key was provided. Send your key in one of these headers: "Authorization: Bearer YOUR_API_KEY" or "x-api-key: YOUR_API_KEY" or "api-key: YOUR_API_KEY".`},
	} {
		if got := answer.DenialFor(authz.ReasonNoKey, c.route).Message; got != c.want {
			t.Errorf("route %+v:\n got %s\nwant %s", c.route, got, c.want)
		}
	}
}
