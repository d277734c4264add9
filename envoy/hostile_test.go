package envoy_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/answer"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
	"github.com/keygate/keygate/store/bolt"
)

// countingIndex is a real bolt store that counts the lookups made in it.
type countingIndex struct {
	*bolt.Store
	lookups atomic.Int64
}

func (c *countingIndex) LookupKey(ctx context.Context, h authz.KeyHash) (authz.IndexedKey, bool, error) {
	c.lookups.Add(1)
	return c.Store.LookupKey(ctx, h)
}

// hostileCase is a request built to hurt, what it must be answered and how
// many store lookups answering it may cost.
type hostileCase struct {
	want    checkCase
	req     *authv3.CheckRequest
	lookups int64
}

func (f *fixture) hostileCases() []hostileCase {
	secret := f.secret[f.activeKey.ID]
	body := secret[len(authz.SecretPrefix):]
	mib := strings.Repeat("A", 1<<20)
	otherLast := "A" // a last character that is not the real one
	if strings.HasSuffix(secret, otherLast) {
		otherLast = "B"
	}
	swapped := []byte(secret)
	for i := len(authz.SecretPrefix); ; i++ { // swap the first two different neighbours
		if swapped[i] != swapped[i+1] {
			swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
			break
		}
	}

	missing := func(name string, req *authv3.CheckRequest) hostileCase {
		return hostileCase{checkCase{name: name, reason: authz.ReasonNoKey, deny: noKey}, req, 0}
	}
	// deny is a request with the given Authorization values, denied for r
	// without a lookup.
	deny := func(name string, r authz.Reason, auth ...string) hostileCase {
		d := noKey
		if answer.Of(r).TokenPresented() {
			d = badKey
		}
		return hostileCase{checkCase{name: name, reason: r, deny: d}, envoyCheck(shapes[0], auth...), 0}
	}
	allow := func(name string, req *authv3.CheckRequest) hostileCase {
		return hostileCase{checkCase{name: name, reason: authz.ReasonAllowed, key: &f.activeKey}, req, 1}
	}
	bad := func(name string, r authz.Reason, k *authz.Key, auth string) hostileCase {
		return hostileCase{checkCase{name: name, reason: r, deny: badKey, key: k}, envoyCheck(shapes[0], auth), 1}
	}
	manyHeaders := envoyCheck(shapes[0], "Bearer "+secret)
	for i := range 10_000 {
		manyHeaders.Attributes.Request.Http.Headers[fmt.Sprintf("x-header-%d", i)] = "v"
	}
	manyRaw := envoyCheck(shapes[2], "Bearer "+secret)
	for i := range 10_000 {
		manyRaw.Attributes.Request.Http.HeaderMap.Headers = append(manyRaw.Attributes.Request.Http.HeaderMap.Headers,
			raw(fmt.Sprintf("x-header-%d", i), "v"))
	}
	bigOther := envoyCheck(shapes[0], "Bearer "+secret)
	bigOther.Attributes.Request.Http.Headers["cookie"] = mib
	repeatedRaw := envoyCheck(shapes[2], "Bearer "+secret)
	for range 10_000 {
		repeatedRaw.Attributes.Request.Http.HeaderMap.Headers = append(repeatedRaw.Attributes.Request.Http.HeaderMap.Headers,
			raw("authorization", "Bearer "+secret))
	}
	bigRaw := envoyCheckWithMapEntries(raw("authorization", "Bearer "+mib))

	return []hostileCase{
		missing("no attributes", &authv3.CheckRequest{}),
		missing("no request", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}),
		missing("no http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}),
		missing("only other headers", envoyCheck(shapes[0])),

		deny("1 MiB header value", authz.ReasonMalformedKey, "Bearer "+mib),
		hostileCase{checkCase{name: "1 MiB raw_value", reason: authz.ReasonMalformedKey, deny: badKey}, bigRaw, 0},
		allow("1 MiB value in another header", bigOther),
		allow("10 000 headers", manyHeaders),
		allow("10 000 raw headers", manyRaw),

		deny("NUL after the key", authz.ReasonMalformedKey, "Bearer "+secret+"\x00"),
		deny("NUL inside the key", authz.ReasonMalformedKey, "Bearer "+secret[:20]+"\x00"+secret[21:]),
		deny("NUL after the scheme", authz.ReasonNotBearer, "Bearer\x00"+secret),
		deny("only NULs", authz.ReasonNotBearer, "\x00\x00\x00\x00\x00\x00\x00"),

		deny("Bearer, tab", authz.ReasonNotBearer, "Bearer\t"+secret),
		deny("Bearer, tabs", authz.ReasonNotBearer, "Bearer\t\t\t"+secret),
		deny("Bearer, space and tab", authz.ReasonMalformedKey, "Bearer \t"+secret),
		allow("Bearer, 100 spaces", envoyCheck(shapes[0], "Bearer"+strings.Repeat(" ", 100)+secret)),
		allow("trailing tabs and spaces", envoyCheck(shapes[0], "Bearer "+secret+"\t \t  ")),
		deny("Bearer, 2000 spaces", authz.ReasonMalformedKey, "Bearer"+strings.Repeat(" ", 2000)+secret),
		deny("Bearer, only spaces", authz.ReasonNoKey, "Bearer"+strings.Repeat(" ", 50)),

		deny("right prefix, wrong checksum", authz.ReasonMalformedKey, "Bearer "+authz.SecretPrefix+strings.Repeat("0", authz.SecretLen-len(authz.SecretPrefix))),
		deny("last character differs", authz.ReasonMalformedKey, "Bearer "+secret[:len(secret)-1]+otherLast),
		deny("first character differs", authz.ReasonMalformedKey, "Bearer "+authz.SecretPrefix+flipCase(body[:1])+body[1:]),
		deny("two characters swapped", authz.ReasonMalformedKey, "Bearer "+string(swapped)),
		deny("truncated", authz.ReasonMalformedKey, "Bearer "+secret[:len(secret)-1]),
		deny("one character more", authz.ReasonMalformedKey, "Bearer "+secret+"A"),
		deny("quoted", authz.ReasonMalformedKey, `Bearer "`+secret+`"`),

		deny("Cyrillic Be", authz.ReasonNotBearer, "\u0412earer "+secret),
		deny("Cyrillic e and a", authz.ReasonNotBearer, "B\u0435\u0430rer "+secret),
		deny("fullwidth Bearer", authz.ReasonNotBearer, "\uff22\uff45\uff41\uff52\uff45\uff52 "+secret),
		deny("no-break space", authz.ReasonNotBearer, "Bearer\u00a0"+secret),
		deny("em space", authz.ReasonNotBearer, "Bearer\u2003"+secret),
		deny("zero-width space in the scheme", authz.ReasonNotBearer, "Bea\u200brer "+secret),
		deny("Cyrillic a in the key", authz.ReasonMalformedKey, "Bearer "+strings.Replace(secret, "k", "\u043a", 1)),

		deny("two values joined", authz.ReasonMalformedKey, "Bearer "+secret+",Bearer "+secret),
		deny("two values, comma and space", authz.ReasonMalformedKey, "Bearer "+secret+", Bearer "+secret),
		deny("key, comma", authz.ReasonMalformedKey, "Bearer "+secret+","),
		deny("two headers", authz.ReasonMalformedKey, "Bearer "+secret, "Bearer "+secret),
		hostileCase{checkCase{name: "10 000 authorization headers", reason: authz.ReasonMalformedKey, deny: badKey}, repeatedRaw, 0},

		bad("unknown key", authz.ReasonUnknownKey, nil, "Bearer "+authz.NewSecret()),
		bad("revoked key", authz.ReasonRevokedKey, &f.revokedKey, f.bearer(f.revokedKey)),
		bad("expired key", authz.ReasonExpiredKey, &f.expiredKey, f.bearer(f.expiredKey)),
	}
}

// flipCase swaps the case of an ASCII letter and turns a digit into another.
func flipCase(c string) string {
	switch b := c[0]; {
	case 'a' <= b && b <= 'z':
		return string(b - 'a' + 'A')
	case 'A' <= b && b <= 'Z':
		return string(b - 'A' + 'a')
	default:
		return string('0' + (b-'0'+1)%10)
	}
}

// TestCheckHostile sends each hostile request through a real gRPC server and
// checks the whole answer and the number of store lookups it cost: none for
// a request without a well-formed key, exactly one for a well-formed key
// whether it is unknown, revoked or expired.
func TestCheckHostile(t *testing.T) {
	f := newFixture(t)
	idx := &countingIndex{Store: f.store}
	client := serve(t, envoy.NewServer(authz.NewAuthorizer(idx, f.clock.Now), nil))
	for _, c := range f.hostileCases() {
		t.Run(c.want.name, func(t *testing.T) {
			before := idx.lookups.Load()
			got, err := client.Check(t.Context(), c.req)
			if err != nil {
				t.Fatal(err)
			}
			assertResponse(t, got, c.want)
			if n := idx.lookups.Load() - before; n != c.lookups {
				t.Errorf("%d store lookups, want %d", n, c.lookups)
			}
		})
	}
}

// TestRequestFromCheckRepeatedHeaders checks that many Authorization entries
// cost memory in proportion to the request, not to its square: joining
// 100 000 values one by one would copy gigabytes.
func TestRequestFromCheckRepeatedHeaders(t *testing.T) {
	var entries []*corev3.HeaderValue
	for range 100_000 {
		entries = append(entries, raw("authorization", "Bearer "+authz.NewSecret()))
	}
	req := envoyCheckWithMapEntries(entries...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := envoy.RequestFromCheck(req).Authorization
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("RequestFromCheck allocated %d bytes for %d entries", n, len(entries))
	}
	if _, r := authz.BearerToken(got); r != authz.ReasonMalformedKey {
		t.Errorf("joined value reads as %v, want %v", r, authz.ReasonMalformedKey)
	}
}

// BenchmarkCheckReject compares a key refused by its checksum with an
// unknown one; lookups/op shows that the first never reaches the store.
func BenchmarkCheckReject(b *testing.B) {
	f := newFixture(b)
	idx := &countingIndex{Store: f.store}
	srv := envoy.NewServer(authz.NewAuthorizer(idx, f.clock.Now), nil)
	secret := f.secret[f.activeKey.ID]
	for _, c := range []struct{ name, auth string }{
		{"wrong checksum", "Bearer " + secret[:len(secret)-1] + flipCase(secret[len(secret)-1:])},
		{"unknown key", "Bearer " + authz.NewSecret()},
	} {
		req := envoyCheck(shapes[0], c.auth)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			before := idx.lookups.Load()
			for b.Loop() {
				if _, err := srv.Check(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(idx.lookups.Load()-before)/float64(b.N), "lookups/op")
		})
	}
}
