package authz

import "encoding/json"

// Headers an allowed request carries to the upstream, overwriting any copy
// the client sent.
const (
	HeaderAccountID = "x-account-id"
	HeaderKeyID     = "x-key-id"
)

// ContentType is the media type of every denial body.
const ContentType = "application/json"

// Denial is the HTTP answer to a denied request, the same whichever proxy
// asked. Every Denial is built once, when the package loads.
type Denial struct {
	Status    int    // 401, 403 or 500
	Challenge string // the WWW-Authenticate value of a 401; "" otherwise
	Message   string // the human-readable message inside Body
	Body      string // JSON in the route's Style, served as ContentType
}

// DenialFor returns the answer to a denial with r on a route of style s, or
// nil for ReasonAllowed. An unset style reads as StyleOpenAI. The Denial is
// shared: do not modify it.
func DenialFor(r Reason, s Style) *Denial {
	if r == ReasonAllowed || r >= numReasons {
		return nil
	}
	if s == 0 || s >= numStylesPlusOne {
		s = StyleOpenAI
	}
	return &denials[s][r]
}

var denials = func() (t [numStylesPlusOne][numReasons]Denial) {
	for _, s := range Styles() {
		for _, r := range Reasons()[1:] {
			t[s][r] = newDenial(r, s)
		}
	}
	return t
}()

// challenge is the protection space named in WWW-Authenticate (RFC 7235).
const challenge = `Bearer realm="keygate"`

func newDenial(r Reason, s Style) Denial {
	e := errorFor(r, s)
	d := Denial{Status: e.status, Message: e.message}
	if d.Status == 401 {
		d.Challenge = challenge
		switch {
		case r == ReasonConflictingKeys:
			d.Challenge += `, error="invalid_request"` // RFC 6750 §3.1: more than one method
		case r.TokenPresented():
			d.Challenge += `, error="invalid_token"`
		}
	}
	var body any
	if s == StyleAnthropic {
		type inner struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}
		body = struct {
			Type  string `json:"type"`
			Error inner  `json:"error"`
		}{"error", inner{e.anthropicType, e.message}}
	} else {
		type inner struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"` // always null
			Code    string  `json:"code"`
		}
		body = struct {
			Error inner `json:"error"`
		}{inner{Message: e.message, Type: e.openAIType, Code: e.code}}
	}
	// Structs of strings always marshal; this runs once per Reason and Style.
	b, _ := json.Marshal(body)
	d.Body = string(b)
	return d
}

// apiError is what a denial tells the caller, in both styles' terms.
type apiError struct {
	status        int
	message       string
	openAIType    string // OpenAI's error.type
	code          string // OpenAI's error.code
	anthropicType string // Anthropic's error.type
}

// errorFor returns the error a caller sees for a denial with r. Every reason
// that presented a token reads the same, so that a caller cannot tell an
// unknown key from a revoked or expired one.
func errorFor(r Reason, s Style) apiError {
	const (
		unauthorized = "authentication_error"
		forbidden    = "permission_error"
	)
	switch {
	case r == ReasonNoCredential:
		hint := `Send your key in the Authorization header: "Authorization: Bearer YOUR_API_KEY".`
		if s == StyleAnthropic {
			hint = `Send your key in the x-api-key header: "x-api-key: YOUR_API_KEY".`
		}
		return apiError{401, "No API key was provided. " + hint, "invalid_request_error", "invalid_api_key", unauthorized}
	case r == ReasonNotBearer:
		return apiError{401, `The Authorization header does not use the Bearer scheme. Send your key as "Authorization: Bearer YOUR_API_KEY".`,
			"invalid_request_error", "invalid_api_key", unauthorized}
	case r == ReasonConflictingKeys:
		return apiError{401, "The request carries more than one API key, and they differ. Send one key.",
			"invalid_request_error", "invalid_api_key", unauthorized}
	case r.TokenPresented():
		return apiError{401, "Incorrect API key provided. Check that the whole key was copied, or create a new one.",
			"invalid_request_error", "invalid_api_key", unauthorized}
	case r == ReasonInsufficientBalance:
		return apiError{403, "Your account balance is exhausted. Top up your balance to continue making requests.",
			"insufficient_quota", "insufficient_balance", forbidden}
	case r == ReasonAccountDisabled:
		return apiError{403, "The account this API key belongs to is disabled.", "permission_error", "account_disabled", forbidden}
	case r == ReasonBadRoute:
		return apiError{500, "The API gateway is misconfigured for this route. Contact its operator.",
			"server_error", "gateway_misconfigured", "api_error"}
	}
	return apiError{403, "This API key may not make this request.", "permission_error", "forbidden", forbidden}
}
