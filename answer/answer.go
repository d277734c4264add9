// Package answer is how keygate's decisions look on the wire, whichever
// proxy asked: the headers of an allow, and the HTTP status, challenge and
// JSON body of every denial. authz decides; this package only presents.
//
// Every denial is built once, when the package loads; the adapters (envoy,
// httpauth) pick one per request.
package answer

import (
	"encoding/json"
	"strings"

	"github.com/keygate/keygate/authz"
)

// Headers an allowed request carries to the upstream, overwriting any copy
// the client sent.
const (
	HeaderAccountID = "x-account-id"
	HeaderKeyID     = "x-key-id"
)

// Headers of a denial.
const (
	HeaderContentType = "content-type"
	HeaderChallenge   = "www-authenticate" // on every 401
	ContentType       = "application/json" // of every denial body
)

// Meaning is what one authz.Reason tells the caller, in the terms of both
// API styles.
type Meaning struct {
	Status int // HTTP status: 200 for ReasonAllowed, else 401, 403 or 500
	// BearerError is the error attribute of a 401's challenge (RFC 6750
	// §3.1): "invalid_token" when a presented token failed,
	// "invalid_request" for several differing keys, "" otherwise.
	BearerError   string
	Code          string // OpenAI's error.code
	OpenAIType    string // OpenAI's error.type
	AnthropicType string // Anthropic's error.type
	// Message is the human-readable message. ReasonNoKey's names the
	// route's headers, so Denial.Message has the whole text.
	Message string
}

// TokenPresented reports whether the request presented a token that failed.
func (m Meaning) TokenPresented() bool { return m.BearerError == "invalid_token" }

// Of returns what r, one of authz.Reasons, tells the caller. Every reason
// that presented a token reads the same, so that a caller cannot tell an
// unknown key from a revoked or expired one; the reason is kept for metrics
// and logs.
func Of(r authz.Reason) Meaning { return meanings[r] }

// meanings is the one table of what each reason tells the caller.
var meanings = func() [authz.NumReasons]Meaning {
	const (
		unauthorized = "authentication_error"
		forbidden    = "permission_error"
		badToken     = "Incorrect API key provided. Check that the whole key was copied, or create a new one."
	)
	return [authz.NumReasons]Meaning{
		authz.ReasonAllowed: {Status: 200},
		authz.ReasonNoKey: {401, "", "invalid_api_key", "invalid_request_error", unauthorized,
			"No API key was provided."},
		authz.ReasonNotBearer: {401, "", "invalid_api_key", "invalid_request_error", unauthorized,
			`The Authorization header does not use the Bearer scheme. Send your key as "Authorization: Bearer YOUR_API_KEY".`},
		authz.ReasonConflictingKeys: {401, "invalid_request", "invalid_api_key", "invalid_request_error", unauthorized,
			"The request carries more than one API key, and they differ. Send one key."},
		authz.ReasonMalformedKey: {401, "invalid_token", "invalid_api_key", "invalid_request_error", unauthorized, badToken},
		authz.ReasonUnknownKey:   {401, "invalid_token", "invalid_api_key", "invalid_request_error", unauthorized, badToken},
		authz.ReasonRevokedKey:   {401, "invalid_token", "invalid_api_key", "invalid_request_error", unauthorized, badToken},
		authz.ReasonExpiredKey:   {401, "invalid_token", "invalid_api_key", "invalid_request_error", unauthorized, badToken},
		authz.ReasonAccountDisabled: {403, "", "account_disabled", "permission_error", forbidden,
			"The account this API key belongs to is disabled."},
		authz.ReasonInsufficientBalance: {403, "", "insufficient_balance", "insufficient_quota", forbidden,
			"Your account balance is exhausted. Top up your balance to continue making requests."},
		authz.ReasonBadRoute: {500, "", "gateway_misconfigured", "server_error", "api_error",
			"The API gateway is misconfigured for this route. Contact its operator."},
	}
}()

// Denial is the HTTP answer to a denied request.
type Denial struct {
	Status    int    // 401, 403 or 500
	Challenge string // the WWW-Authenticate value of a 401; "" otherwise
	Message   string // the human-readable message inside Body
	Body      string // JSON in the route's Style, served as ContentType
}

// DenialFor returns the answer to a denial with r on route, or nil for
// ReasonAllowed. An unset Style reads as authz.StyleOpenAI, unset Sources as
// the Style's DefaultSources. The Denial is shared: do not modify it.
func DenialFor(r authz.Reason, route authz.Route) *Denial {
	if r == authz.ReasonAllowed || r >= authz.NumReasons {
		return nil
	}
	s := route.Style
	if s == 0 || s >= authz.NumStyles {
		s = authz.StyleOpenAI
	}
	set := route.Sources % authz.NumSourceSets
	if set == 0 {
		set = s.DefaultSources()
	}
	return &denials[s][set][r]
}

// denials holds every Denial by Style, Sources and Reason.
var denials = func() (t *[authz.NumStyles][authz.NumSourceSets][authz.NumReasons]Denial) {
	t = new([authz.NumStyles][authz.NumSourceSets][authz.NumReasons]Denial)
	for _, s := range authz.Styles() {
		for set := authz.Sources(1); set < authz.NumSourceSets; set++ {
			for _, r := range authz.Reasons()[1:] {
				t[s][set][r] = newDenial(r, s, set)
			}
		}
	}
	return t
}()

// realm is the protection space named in WWW-Authenticate (RFC 7235).
const realm = `Bearer realm="keygate"`

func newDenial(r authz.Reason, s authz.Style, set authz.Sources) Denial {
	m := meanings[r]
	d := Denial{Status: m.Status, Message: m.Message}
	if r == authz.ReasonNoKey {
		d.Message += " " + keyHint(set)
	}
	if d.Status == 401 {
		d.Challenge = realm
		if m.BearerError != "" {
			d.Challenge += `, error="` + m.BearerError + `"`
		}
	}
	var body any
	if s == authz.StyleAnthropic {
		type inner struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		body = struct {
			Type  string `json:"type"`
			Error inner  `json:"error"`
		}{"error", inner{m.AnthropicType, d.Message}}
	} else {
		type inner struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"` // always null
			Code    string  `json:"code"`
		}
		body = struct {
			Error inner `json:"error"`
		}{inner{Message: d.Message, Type: m.OpenAIType, Code: m.Code}}
	}
	// Structs of strings always marshal; this runs once per denial.
	b, _ := json.Marshal(body)
	d.Body = string(b)
	return d
}

// keyHint tells a caller without a key where to send it: in the one header
// the route accepts, or in any of them.
func keyHint(set authz.Sources) string {
	var name string
	var examples []string
	for _, src := range authz.AllSources() {
		if !set.Has(src) {
			continue
		}
		name = src.Header()
		if src == authz.SourceAuthorization {
			name = "Authorization"
			examples = append(examples, `"Authorization: Bearer YOUR_API_KEY"`)
		} else {
			examples = append(examples, `"`+name+`: YOUR_API_KEY"`)
		}
	}
	if len(examples) == 1 {
		return "Send your key in the " + name + " header: " + examples[0] + "."
	}
	return "Send your key in one of these headers: " + strings.Join(examples, " or ") + "."
}
