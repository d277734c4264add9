package authz

import (
	"context"
	"time"
)

// Credential is what a KeyIndex knows about a key at the moment of a check.
type Credential struct {
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
	LookupKey(ctx context.Context, h KeyHash) (c Credential, found bool, err error)
	// MarkUsed records that the key was used at t. It is cheap and does
	// not write to disk; the index flushes such times in batches.
	MarkUsed(h KeyHash, t time.Time)
}

// Request is the part of an HTTP request the decision needs.
type Request struct {
	// Authorization is the value of the Authorization header, "" if absent.
	Authorization string
}

// Reason explains a Decision. Its values are a bounded set, fit for metric
// labels.
type Reason uint8

// Reasons, in the order a check discovers them.
const (
	ReasonAllowed             Reason = iota // the key is good and the account may spend
	ReasonNoCredential                      // no Authorization header, or an empty one
	ReasonNotBearer                         // a scheme other than Bearer, or no scheme
	ReasonMalformedKey                      // a Bearer token that is not a well-formed key
	ReasonUnknownKey                        // a well-formed key that is not stored
	ReasonRevokedKey                        // the key was revoked
	ReasonExpiredKey                        // the key's expiry has passed
	ReasonAccountDisabled                   // the key is good, its account is disabled
	ReasonInsufficientBalance               // the key is good, the balance is at or below zero
	numReasons
)

// Reasons lists every Reason, for building per-reason tables.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

var reasonNames = [numReasons]string{
	ReasonAllowed:             "allowed",
	ReasonNoCredential:        "no_credential",
	ReasonNotBearer:           "not_bearer",
	ReasonMalformedKey:        "malformed_key",
	ReasonUnknownKey:          "unknown_key",
	ReasonRevokedKey:          "revoked_key",
	ReasonExpiredKey:          "expired_key",
	ReasonAccountDisabled:     "account_disabled",
	ReasonInsufficientBalance: "insufficient_balance",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Unauthenticated reports whether the reason is an authentication failure
// (HTTP 401) rather than a refusal of a known caller (HTTP 403).
func (r Reason) Unauthenticated() bool {
	return r >= ReasonNoCredential && r <= ReasonExpiredKey
}

// TokenPresented reports whether the request carried a Bearer token, which
// RFC 6750 answers with error="invalid_token" when it fails.
func (r Reason) TokenPresented() bool {
	return r >= ReasonMalformedKey && r <= ReasonExpiredKey
}

// Decision is the answer to one Request. A denial is a Decision, never an
// error. KeyID and AccountID are set whenever the key was found, denied or not.
type Decision struct {
	Reason    Reason
	KeyID     string
	AccountID string
}

// Allowed reports whether the request may go on to the upstream.
func (d Decision) Allowed() bool { return d.Reason == ReasonAllowed }

// MaxAuthorizationLen bounds the header values worth parsing; anything longer
// cannot hold a key and is rejected without further work.
const MaxAuthorizationLen = 1024

// Authorizer decides requests against a KeyIndex. It is safe for concurrent
// use.
type Authorizer struct {
	keys KeyIndex
	now  func() time.Time
}

// NewAuthorizer returns an Authorizer over keys. now is the clock; nil means
// time.Now.
func NewAuthorizer(keys KeyIndex, now func() time.Time) *Authorizer {
	if now == nil {
		now = time.Now
	}
	return &Authorizer{keys: keys, now: now}
}

// Authorize decides req. It returns an error only when the index could not
// answer; the caller must then fail closed.
func (a *Authorizer) Authorize(ctx context.Context, req Request) (Decision, error) {
	token, reason := BearerToken(req.Authorization)
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
		return "", ReasonNoCredential
	}
	const scheme = "bearer"
	if len(header) < len(scheme) || !equalFoldASCII(header[:len(scheme)], scheme) {
		return "", ReasonNotBearer
	}
	rest := header[len(scheme):]
	if rest == "" {
		return "", ReasonNoCredential
	}
	if rest[0] != ' ' {
		return "", ReasonNotBearer // "Bearerx ..." is another scheme
	}
	for rest != "" && rest[0] == ' ' {
		rest = rest[1:]
	}
	if rest == "" {
		return "", ReasonNoCredential
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
