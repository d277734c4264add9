package authz

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrorCode classifies an Error so that every transport maps it the same way
// (gRPC status code, HTTP status).
type ErrorCode string

// Error codes. The zero code means an internal error.
const (
	EInvalid     ErrorCode = "invalid_argument" // the request is wrong; retrying it will not help
	ENotFound    ErrorCode = "not_found"        // the account or key does not exist
	EConflict    ErrorCode = "conflict"         // the request clashes with the current state
	EUnavailable ErrorCode = "unavailable"      // the store cannot serve now; retry later
	EInternal    ErrorCode = "internal"         // a bug or a broken store
)

// Error is an error a caller can act on: a code and a message safe to show.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Code returns the code of the first *Error in err's chain, EInternal for any
// other error, and "" for nil.
func Code(err error) ErrorCode {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// Message returns the message of the first *Error in err's chain, or a
// generic text that hides internal detail.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// maxQuoted bounds the bytes of a bad input that Quote shows.
const maxQuoted = 40

// Quote shows a bad string input in an error message, the one way every
// message does: quoted, cut to 40 bytes, and not at all when it may be a
// key's secret (pasted into the wrong field), which must never reach a
// response or a log. Numbers are shown as they are.
func Quote(s string) string {
	switch {
	case strings.HasPrefix(s, SecretPrefix) || ValidImportedSecret(s) && !strings.HasPrefix(s, AccountIDPrefix) && !strings.HasPrefix(s, KeyIDPrefix):
		return "(not shown: it may be a secret)"
	case len(s) > maxQuoted:
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}
