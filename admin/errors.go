package admin

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
)

// errorClass ties the code of a JSON error body to a gRPC code and an HTTP
// status.
type errorClass struct {
	code string // the "code" of a JSON error body; an authz.ErrorCode where there is one
	grpc codes.Code
	http int
}

// errorClasses is the one table that maps errors between authz, gRPC and
// HTTP. The Service turns authz errors into gRPC statuses with it, and the
// HTTP handler turns those statuses into HTTP statuses with it.
var errorClasses = []errorClass{
	{string(authz.EInvalid), codes.InvalidArgument, http.StatusBadRequest},
	{string(authz.ENotFound), codes.NotFound, http.StatusNotFound},
	{string(authz.EConflict), codes.FailedPrecondition, http.StatusConflict},
	{string(authz.EUnavailable), codes.Unavailable, http.StatusServiceUnavailable},
	internalClass,
	{codeUnauthenticated, codes.Unauthenticated, http.StatusUnauthorized},
	{"deadline_exceeded", codes.DeadlineExceeded, http.StatusGatewayTimeout},
	{"canceled", codes.Canceled, 499}, // nginx's "client closed request"; nobody is left to read it
}

const codeUnauthenticated = "unauthenticated"

// internalClass also answers any code the table does not list.
var internalClass = errorClass{string(authz.EInternal), codes.Internal, http.StatusInternalServerError}

// classOfCode returns the class of an authz error code.
func classOfCode(code authz.ErrorCode) errorClass {
	for _, c := range errorClasses {
		if c.code == string(code) {
			return c
		}
	}
	return internalClass
}

// classOfGRPC returns the class of a gRPC code.
func classOfGRPC(code codes.Code) errorClass {
	for _, c := range errorClasses {
		if c.grpc == code {
			return c
		}
	}
	return internalClass
}

// toStatus turns an error from validation or the store into a gRPC status
// error. Messages of internal errors are logged, never sent; a store that
// cannot serve is logged as a warning.
func (s *Service) toStatus(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	c := classOfCode(authz.Code(err))
	if c.grpc == codes.Unavailable {
		s.log.Warn("admin: the store is unavailable", "err", err)
	}
	if c.grpc == codes.Internal {
		s.log.Error("admin: internal error", "err", err)
		return status.Error(codes.Internal, "internal error")
	}
	return status.Error(c.grpc, authz.Message(err))
}
