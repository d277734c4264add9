package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

var testTime = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		header string
		token  string
		reason authz.Reason
	}{
		{"", "", authz.ReasonNoKey},
		{"   ", "", authz.ReasonNoKey},
		{"Bearer", "", authz.ReasonNoKey},
		{"Bearer ", "", authz.ReasonNoKey},
		{"Bearer   ", "", authz.ReasonNoKey},
		{"Bearer abc", "abc", authz.ReasonAllowed},
		{"bearer abc", "abc", authz.ReasonAllowed},
		{"BEARER abc", "abc", authz.ReasonAllowed},
		{"bEaReR   abc\t ", "abc", authz.ReasonAllowed},
		{"Bearer a b", "a b", authz.ReasonAllowed}, // rejected later by the key format
		{"Bearer\tabc", "", authz.ReasonNotBearer},
		{"Bearerabc", "", authz.ReasonNotBearer},
		{"Basic dXNlcjpwYXNz", "", authz.ReasonNotBearer},
		{"sk-kg-abc", "", authz.ReasonNotBearer},
		{"Bear", "", authz.ReasonNotBearer},
		{"Веarer abc", "", authz.ReasonNotBearer}, // Cyrillic look-alikes
		{"Bearer " + strings.Repeat("a", authz.MaxAuthorizationLen), "", authz.ReasonMalformedKey},
	} {
		token, reason := authz.BearerToken(tc.header)
		if token != tc.token || reason != tc.reason {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tc.header, token, reason, tc.token, tc.reason)
		}
	}
}

func TestReasonNames(t *testing.T) {
	for _, r := range authz.Reasons() {
		if r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// FuzzBearerToken checks that parsing never panics and that a token it
// returns is a non-empty suffix of the header with no leading space.
func FuzzBearerToken(f *testing.F) {
	f.Add("Bearer sk-kg-abc")   // the normal case
	f.Add("bearer    x")        // several spaces
	f.Add("Basic Zm9vOmJhcg==") // another scheme
	f.Add("Bearer a,Bearer b")  // two headers joined by Envoy
	f.Add("Bearer \xff\xfe")    // invalid UTF-8
	f.Fuzz(func(t *testing.T, header string) {
		token, reason := authz.BearerToken(header)
		if reason == authz.ReasonAllowed {
			if token == "" || token[0] == ' ' || !strings.Contains(header, token) {
				t.Fatalf("BearerToken(%q) = %q", header, token)
			}
		} else if token != "" {
			t.Fatalf("BearerToken(%q) failed with %v but returned %q", header, reason, token)
		}
	})
}
