package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/authz"
)

const (
	// wwwAuthenticate is sent with every 401 of the HTTP transport.
	wwwAuthenticate     = `Bearer realm="keygate-admin"`
	messageUnauthorized = "missing or wrong admin token"
)

// tokenCheck verifies "Bearer <token>" values against the admin token. It
// keeps only the token's SHA-256 and compares digests in constant time, so
// neither the token's bytes nor its length leak through timing. The zero
// tokenCheck, made for an empty token, accepts nothing.
type tokenCheck struct {
	sum [sha256.Size]byte
	set bool
}

func newTokenCheck(token string) tokenCheck {
	if token == "" {
		return tokenCheck{}
	}
	return tokenCheck{sum: sha256.Sum256([]byte(token)), set: true}
}

// verify reports whether values, the Authorization header values of one
// request, are exactly one Bearer credential carrying the admin token.
func (c tokenCheck) verify(values []string) bool {
	if !c.set || len(values) != 1 {
		return false
	}
	token, r := authz.BearerToken(values[0])
	if r != authz.ReasonAllowed {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(sum[:], c.sum[:]) == 1
}

// UnaryAuthInterceptor returns a gRPC interceptor that answers
// codes.Unauthenticated unless the call's "authorization" metadata is
// "Bearer <token>". It guards every unary method of the server it is
// installed on. An empty token authenticates nobody.
func UnaryAuthInterceptor(token string) grpc.UnaryServerInterceptor {
	check := newTokenCheck(token)
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if !check.verify(md.Get("authorization")) {
			return nil, status.Error(codes.Unauthenticated, messageUnauthorized)
		}
		return next(ctx, req)
	}
}
