package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"sync/atomic"

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

// Tokens is the set of admin tokens a server accepts. Set replaces it while
// requests are served, so that tokens can be rotated without a restart. It
// keeps only the tokens' SHA-256 and compares digests in constant time, so
// neither a token's bytes nor its length leak through timing. An empty set
// accepts nobody. It is safe for concurrent use.
type Tokens struct {
	sums atomic.Pointer[[][sha256.Size]byte]
}

// NewTokens returns a set of the given tokens; empty ones are left out.
func NewTokens(tokens ...string) *Tokens {
	t := new(Tokens)
	t.Set(tokens...)
	return t
}

// Set makes tokens, less empty ones, the accepted set.
func (t *Tokens) Set(tokens ...string) {
	sums := make([][sha256.Size]byte, 0, len(tokens))
	for _, tok := range tokens {
		if tok != "" {
			sums = append(sums, sha256.Sum256([]byte(tok)))
		}
	}
	t.sums.Store(&sums)
}

// verify reports whether values, the Authorization header values of one
// request, are exactly one Bearer credential carrying an accepted token.
// It compares with every token, so that the time taken does not say which
// one matched.
func (t *Tokens) verify(values []string) bool {
	if len(values) != 1 {
		return false
	}
	token, r := authz.BearerToken(values[0])
	if r != authz.ReasonAllowed {
		return false
	}
	sums := t.sums.Load()
	if sums == nil {
		return false // the zero Tokens
	}
	sum := sha256.Sum256([]byte(token))
	match := 0
	for _, s := range *sums {
		match |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	return match == 1
}

// GRPCServerOptions are the options of the admin API's gRPC server: tokens
// guard every call (UnaryAuthInterceptor), and a request may be as large as
// the JSON API takes (1 MiB) instead of gRPC's 4 MiB, so that neither way in
// accepts more than the other.
func GRPCServerOptions(tokens *Tokens) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.UnaryInterceptor(UnaryAuthInterceptor(tokens)),
		grpc.MaxRecvMsgSize(maxBodyBytes),
	}
}

// UnaryAuthInterceptor returns a gRPC interceptor that answers
// codes.Unauthenticated unless the call's "authorization" metadata is
// "Bearer <token>" with one of tokens. It guards every unary method of the
// server it is installed on.
func UnaryAuthInterceptor(tokens *Tokens) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if !tokens.verify(md.Get("authorization")) {
			return nil, status.Error(codes.Unauthenticated, messageUnauthorized)
		}
		return next(ctx, req)
	}
}
