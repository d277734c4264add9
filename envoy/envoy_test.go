package envoy_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/store/bolt"
)

// clock is the injected time of a fixture; tests move it forward.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// fixture is a real bbolt store with one account and key for every outcome.
type fixture struct {
	clock *clock
	store *bolt.Store
	authz *authz.Authorizer

	active, disabled, zero, negative authz.Account

	activeKey, revokedKey, expiredKey, disabledKey, zeroKey, negativeKey authz.Key
	// Secrets of the keys above, by key id.
	secret map[string]string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{clock: newClock(), secret: make(map[string]string)}
	s, err := bolt.Open(filepath.Join(t.TempDir(), "keygate.db"), bolt.Options{Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	f.store = s
	f.authz = authz.NewAuthorizer(s, f.clock.Now)

	f.active = f.account(t, "active", 1000)
	f.disabled = f.account(t, "disabled", 1000)
	f.zero = f.account(t, "zero", 0)
	f.negative = f.account(t, "negative", 10)
	if _, err := s.ChangeBalance(ctx, authz.BalanceChange{AccountID: f.negative.ID, Kind: authz.LedgerDebit, Amount: 25}); err != nil {
		t.Fatal(err)
	}

	f.activeKey = f.key(t, f.active.ID, "active", time.Time{})
	f.revokedKey = f.key(t, f.active.ID, "revoked", time.Time{})
	if _, err := s.RevokeKey(ctx, f.revokedKey.ID); err != nil {
		t.Fatal(err)
	}
	f.expiredKey = f.key(t, f.active.ID, "expired", f.clock.Now().Add(time.Hour))
	f.disabledKey = f.key(t, f.disabled.ID, "disabled", time.Time{})
	if _, err := s.SetAccountStatus(ctx, f.disabled.ID, authz.AccountDisabled); err != nil {
		t.Fatal(err)
	}
	f.zeroKey = f.key(t, f.zero.ID, "zero", time.Time{})
	f.negativeKey = f.key(t, f.negative.ID, "negative", time.Time{})

	f.clock.Add(2 * time.Hour) // past expiredKey's expiry
	return f
}

func (f *fixture) account(t testing.TB, name string, balance int64) authz.Account {
	t.Helper()
	a, err := f.store.CreateAccount(context.Background(), name, balance)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) key(t testing.TB, accountID, name string, expire time.Time) authz.Key {
	t.Helper()
	secret := authz.NewSecret()
	k, err := f.store.CreateKey(context.Background(), authz.NewKey{
		AccountID:  accountID,
		Name:       name,
		ExpireTime: expire,
		Hash:       authz.HashSecret(secret),
		Hint:       authz.SecretHint(secret),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.secret[k.ID] = secret
	return k
}

// bearer returns the Authorization value that presents k.
func (f *fixture) bearer(k authz.Key) string { return "Bearer " + f.secret[k.ID] }

// serve runs srv on a real gRPC server on a loopback port and returns a
// client connected to it without TLS, as an Envoy sidecar would be.
func serve(t testing.TB, srv authv3.AuthorizationServer) authv3.AuthorizationClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, srv)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return authv3.NewAuthorizationClient(conn)
}

// shape says how Envoy encodes the request it asks about.
type shape struct {
	name     string
	protocol string // "HTTP/1.1" or "HTTP/2"
	raw      bool   // encode_raw_headers: header_map with raw_value, no headers map
}

var shapes = []shape{
	{"http1", "HTTP/1.1", false},
	{"http2", "HTTP/2", false},
	{"raw", "HTTP/1.1", true},
}

// envoyCheck builds the CheckRequest that Envoy's ext_authz HTTP filter sends
// for a POST /v1/chat/completions from a client behind one proxy. auth holds
// the Authorization header values as the client sent them, in order.
func envoyCheck(s shape, auth ...string) *authv3.CheckRequest {
	headers := [][2]string{
		{":authority", "api.example.com"},
		{":path", "/v1/chat/completions?stream=true&user=42"},
		{":method", "POST"},
		{":scheme", "https"},
		{"user-agent", "OpenAI/Python 1.54.0"},
		{"accept", "application/json"},
		{"content-type", "application/json"},
		{"content-length", "187"},
		{"x-account-id", "acct_SPOOFEDBYTHECLIENT0000000"}, // must not survive an allow
		{"x-forwarded-for", "203.0.113.7, 198.51.100.23"},
		{"x-forwarded-proto", "https"},
		{"x-request-id", "6b1d2c9e-6f3a-4c55-9d0e-2f8a1b7c4d10"},
		{"x-envoy-external-address", "198.51.100.23"},
	}
	for _, v := range auth {
		headers = append(headers, [2]string{"authorization", v})
	}

	http := &authv3.AttributeContext_HttpRequest{
		Id:       "11537406282374925396",
		Method:   "POST",
		Path:     "/v1/chat/completions?stream=true&user=42",
		Host:     "api.example.com",
		Scheme:   "https",
		Size:     187,
		Protocol: s.protocol,
	}
	if s.raw {
		http.HeaderMap = &corev3.HeaderMap{}
		for _, h := range headers {
			http.HeaderMap.Headers = append(http.HeaderMap.Headers, &corev3.HeaderValue{Key: h[0], RawValue: []byte(h[1])})
		}
	} else {
		// Envoy joins repeated headers with "," and, since proto3 strings
		// must be UTF-8, replaces each invalid byte with '!'.
		http.Headers = make(map[string]string, len(headers))
		for _, h := range headers {
			v := envoyUTF8(h[1])
			if old, ok := http.Headers[h[0]]; ok {
				v = old + "," + v
			}
			http.Headers[h[0]] = v
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress("10.0.3.17", 51234)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress("10.0.0.5", 8080)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)),
			Http: http,
		},
		MetadataContext: &corev3.Metadata{},
	}}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// envoyUTF8 replaces every byte of s that is not part of valid UTF-8 with '!',
// as Envoy does before it puts a header value in a proto3 string.
func envoyUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte('!')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
