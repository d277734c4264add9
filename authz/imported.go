package authz

import "strings"

// Keys imported from another gateway keep their own format, so that
// nobody has to reissue them. Such a secret cannot be checksum-checked; it
// is looked up when it is shaped like a bearer token at all.
const (
	MinImportedSecretLen = 20
	MaxImportedSecretLen = 256
)

// ValidImportedSecret reports whether s can be an imported secret:
// MinImportedSecretLen to MaxImportedSecretLen characters of RFC 6750's
// token68 alphabet, and not starting with SecretPrefix (keygate's own keys
// are always checked in full).
func ValidImportedSecret(s string) bool {
	if len(s) < MinImportedSecretLen || len(s) > MaxImportedSecretLen || strings.HasPrefix(s, SecretPrefix) {
		return false
	}
	i := 0
	for i < len(s) && isToken68(s[i]) {
		i++
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	return i == len(s) && s[0] != '='
}

// WellFormedToken reports whether a Bearer token is worth a lookup: a
// secret in keygate's format with a correct checksum, or a possible
// imported secret.
func WellFormedToken(s string) bool {
	if strings.HasPrefix(s, SecretPrefix) {
		return ValidSecret(s)
	}
	return ValidImportedSecret(s)
}

// isToken68 reports whether c is in token68 (RFC 7235), less the '='
// padding.
func isToken68(c byte) bool {
	return isBase62(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}
