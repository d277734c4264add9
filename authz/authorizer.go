package authz

import (
	"context"
	"time"
)

// IndexedKey is what a KeyIndex holds of a key for a check: the key's own
// state and its account's, as of the moment of the lookup.
type IndexedKey struct {
	KeyID           string
	AccountID       string
	ExpireTime      time.Time // zero: never expires
	Revoked         bool
	AccountDisabled bool
	Balance         int64
}

// KeyIndex finds keys by hash on the request path. Implementations answer
// from memory: no disk or network I/O, no global lock.
type KeyIndex interface {
	// LookupKey returns the key whose secret hashes to h. found is false
	// for an unknown key; err is set only when the index cannot answer.
	LookupKey(ctx context.Context, h KeyHash) (k IndexedKey, found bool, err error)
	// MarkUsed records that the key was used at t. It is cheap and does
	// not write to disk; the index flushes such times in batches.
	MarkUsed(h KeyHash, t time.Time)
}

// Request is the part of an HTTP request the decision needs. The zero
// value is a request without a key on a route that sets nothing.
type Request struct {
	// Authorization is the value of the Authorization header, "" if absent.
	Authorization string
	// XAPIKey and APIKey are the values of the x-api-key and api-key
	// headers, "" if absent. They count only on routes that accept them.
	XAPIKey, APIKey string
	// Route is what the request's route asks; see Route.
	Route Route
}

// KeyHeader returns the field that holds the value of s's header.
func (r *Request) KeyHeader(s Source) *string {
	switch s {
	case SourceXAPIKey:
		return &r.XAPIKey
	case SourceAPIKey:
		return &r.APIKey
	}
	return &r.Authorization
}

// Reason explains a Decision. Its values are a bounded set, fit for metric
// labels. What each tells the caller (HTTP status, codes, message) is the
// denial package's table.
type Reason uint8

// Reasons, in the order a check discovers them.
const (
	ReasonAllowed             Reason = iota // the key is good and the account may spend
	ReasonNoKey                             // no header the route accepts carries a key, or only empty ones
	ReasonNotBearer                         // a scheme other than Bearer, or no scheme
	ReasonConflictingKeys                   // two credential headers that carry different values
	ReasonMalformedKey                      // a Bearer token that is not a well-formed key
	ReasonUnknownKey                        // a well-formed key that is not stored
	ReasonRevokedKey                        // the key was revoked
	ReasonExpiredKey                        // the key's expiry has passed
	ReasonAccountDisabled                   // the key is good, its account is disabled
	ReasonInsufficientBalance               // the key is good, the balance is at or below zero
	ReasonBadRoute                          // the route's settings do not parse (checked first)
	// NumReasons is one more than the last Reason: the length of tables
	// indexed by Reason.
	NumReasons
)

// Reasons lists every Reason, for building per-reason tables.
func Reasons() []Reason {
	rs := make([]Reason, NumReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// reasonNames are the metric labels; no_credential predates ReasonNoKey's
// name and stays, since dashboards and alerts use it.
var reasonNames = [NumReasons]string{
	ReasonAllowed:             "allowed",
	ReasonNoKey:               "no_credential",
	ReasonNotBearer:           "not_bearer",
	ReasonMalformedKey:        "malformed_key",
	ReasonUnknownKey:          "unknown_key",
	ReasonRevokedKey:          "revoked_key",
	ReasonExpiredKey:          "expired_key",
	ReasonAccountDisabled:     "account_disabled",
	ReasonInsufficientBalance: "insufficient_balance",
	ReasonConflictingKeys:     "conflicting_keys",
	ReasonBadRoute:            "bad_route",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Decision is the answer to one Request. A denial is a Decision, never an
// error. KeyID and AccountID are set whenever the key was found, denied or not.
type Decision struct {
	Reason    Reason
	KeyID     string
	AccountID string
	// Route is the request's route with every field set: its Sources are
	// the headers to strip on allow, its Style that of the denial body.
	Route Route
}

// Allowed reports whether the request may go on to the upstream.
func (d Decision) Allowed() bool { return d.Reason == ReasonAllowed }

// MaxAuthorizationLen bounds the header values worth parsing; anything longer
// cannot hold a key and is rejected without further work.
const MaxAuthorizationLen = 1024

// Authorizer decides requests against a KeyIndex. It is safe for concurrent
// use.
type Authorizer struct {
	keys     KeyIndex
	now      func() time.Time
	defaults Route
}

// NewAuthorizer returns an Authorizer over keys. now is the clock; nil means
// time.Now.
func NewAuthorizer(keys KeyIndex, now func() time.Time) *Authorizer {
	if now == nil {
		now = time.Now
	}
	return &Authorizer{keys: keys, now: now}
}

// WithDefaults returns an Authorizer over the same index whose requests
// take what their Route leaves unset from d, and what d leaves unset from
// DefaultRoute: its Style, then the headers of the Style in effect.
func (a *Authorizer) WithDefaults(d Route) *Authorizer {
	b := *a
	b.defaults = d
	return &b
}

// Authorize decides req. It returns an error only when the index could not
// answer; the caller must then fail closed.
func (a *Authorizer) Authorize(ctx context.Context, req Request) (Decision, error) {
	route := req.Route.complete(a.defaults)
	if route.Invalid {
		return Decision{Reason: ReasonBadRoute, Route: route}, nil
	}
	token, reason := req.key(route.Sources)
	d, err := a.decide(ctx, token, reason)
	d.Route = route
	return d, err
}

// decide looks up the token that key found, or passes on its reason.
func (a *Authorizer) decide(ctx context.Context, token string, reason Reason) (Decision, error) {
	if reason != ReasonAllowed {
		return Decision{Reason: reason}, nil
	}
	if !WellFormedToken(token) {
		return Decision{Reason: ReasonMalformedKey}, nil
	}
	h := HashSecret(token)
	c, found, err := a.keys.LookupKey(ctx, h)
	if err != nil {
		return Decision{}, err
	}
	if !found {
		return Decision{Reason: ReasonUnknownKey}, nil
	}
	d := Decision{KeyID: c.KeyID, AccountID: c.AccountID}
	now := a.now()
	switch {
	case c.Revoked:
		d.Reason = ReasonRevokedKey
	case !c.ExpireTime.IsZero() && !now.Before(c.ExpireTime):
		d.Reason = ReasonExpiredKey
	case c.AccountDisabled:
		d.Reason = ReasonAccountDisabled
	case c.Balance <= 0:
		d.Reason = ReasonInsufficientBalance
	default:
		d.Reason = ReasonAllowed
		a.keys.MarkUsed(h, now)
	}
	return d, nil
}

// key returns the token that the request's headers among sources carry, or
// the Reason there is none. A request may carry its key in several
// of them, but then they must agree: every value present (absent and empty
// ones do not count) must yield the same token.
func (r *Request) key(sources Sources) (token string, reason Reason) {
	reason = ReasonNoKey
	for _, s := range AllSources() {
		if !sources.Has(s) {
			continue
		}
		t, why := headerToken(s, *r.KeyHeader(s))
		switch {
		case why == ReasonNoKey:
		case reason == ReasonNoKey:
			token, reason = t, why
		case why != ReasonAllowed || reason != ReasonAllowed || t != token:
			return "", ReasonConflictingKeys
		}
	}
	return token, reason
}

// headerToken reads the token in the value v of s's header: a Bearer token
// in Authorization, the whole trimmed value elsewhere.
func headerToken(s Source, v string) (string, Reason) {
	if s == SourceAuthorization {
		return BearerToken(v)
	}
	if len(v) > MaxAuthorizationLen {
		return "", ReasonMalformedKey
	}
	for v != "" && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	if v = trimTrailingSpace(v); v == "" {
		return "", ReasonNoKey
	}
	return v, ReasonAllowed
}

// BearerToken extracts the token of an "Authorization: Bearer <token>" value.
// The scheme is matched without regard to case (RFC 7235) and separated from
// the token by one or more spaces; trailing spaces and tabs are ignored. On
// failure it returns the Reason, and ReasonAllowed on success.
func BearerToken(header string) (token string, r Reason) {
	if len(header) > MaxAuthorizationLen {
		return "", ReasonMalformedKey
	}
	header = trimTrailingSpace(header)
	if header == "" {
		return "", ReasonNoKey
	}
	const scheme = "bearer"
	if len(header) < len(scheme) || !equalFoldASCII(header[:len(scheme)], scheme) {
		return "", ReasonNotBearer
	}
	rest := header[len(scheme):]
	if rest == "" {
		return "", ReasonNoKey
	}
	if rest[0] != ' ' {
		return "", ReasonNotBearer // "Bearerx ..." is another scheme
	}
	for rest != "" && rest[0] == ' ' {
		rest = rest[1:]
	}
	if rest == "" {
		return "", ReasonNoKey
	}
	return rest, ReasonAllowed
}

func trimTrailingSpace(s string) string {
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// equalFoldASCII compares s with lower, which must be lower-case ASCII.
func equalFoldASCII(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}
