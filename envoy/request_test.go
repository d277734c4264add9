package envoy_test

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/envoy"
)

// httpCheck is a CheckRequest with only the HTTP headers set: headers as the
// map, entries as header_map.
func httpCheck(headers map[string]string, entries ...*corev3.HeaderValue) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Headers: headers}
	if entries != nil {
		h.HeaderMap = &corev3.HeaderMap{Headers: entries}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: h},
	}}
}

func raw(key, value string) *corev3.HeaderValue {
	return &corev3.HeaderValue{Key: key, RawValue: []byte(value)}
}

func TestRequestFromCheck(t *testing.T) {
	long := strings.Repeat("a", 2*authz.MaxAuthorizationLen)
	for _, c := range []struct {
		name string
		req  *authv3.CheckRequest
		want string
	}{
		{"nil", nil, ""},
		{"map", httpCheck(map[string]string{"authorization": "Bearer x", "x-api-key": "y"}), "Bearer x"},
		// Envoy lower-cases the map's keys; another spelling is not the header.
		{"map, other case", httpCheck(map[string]string{"Authorization": "Bearer x"}), ""},
		{"map, long", httpCheck(map[string]string{"authorization": long}), long},
		{"raw_value", httpCheck(nil, raw(":path", "/"), raw("authorization", "Bearer x")), "Bearer x"},
		{"value", httpCheck(nil, &corev3.HeaderValue{Key: "authorization", Value: "Bearer x"}), "Bearer x"},
		{"raw_value, other case", httpCheck(nil, raw("Authorization", "Bearer x")), "Bearer x"},
		{"raw_value, repeated", httpCheck(nil, raw("authorization", "a"), raw("accept", "*/*"), raw("authorization", "b")), "a,b"},
		{"raw_value, repeated empty", httpCheck(nil, raw("authorization", ""), raw("authorization", "b")), ",b"},
		{"raw_value, long", httpCheck(nil, raw("authorization", long)), long[:authz.MaxAuthorizationLen+1]},
		{"map and raw_value", httpCheck(map[string]string{"authorization": "a"}, raw("authorization", "b")), "a,b"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := envoy.RequestFromCheck(c.req).Authorization; got != c.want {
				t.Errorf("Authorization = %.40q (%d bytes), want %.40q (%d bytes)", got, len(got), c.want, len(c.want))
			}
		})
	}
}

func FuzzRequestFromCheck(f *testing.F) {
	valid := "Bearer " + authz.NewSecret()
	f.Add("", []byte(nil))                               // no header at all
	f.Add(valid, []byte(valid))                          // a well-formed key
	f.Add("Basic dXNlcjpodW50ZXIy", []byte("bearer  x")) // another scheme, a lower-case scheme
	f.Add("Bearer !!", []byte("Bearer \xff\xfe"))        // invalid UTF-8, as the map and raw_value carry it
	f.Add("", make([]byte, authz.MaxAuthorizationLen+2)) // longer than any key
	f.Fuzz(func(t *testing.T, value string, rawValue []byte) {
		if got := envoy.RequestFromCheck(httpCheck(map[string]string{"authorization": value})).Authorization; got != value {
			t.Errorf("map: Authorization = %q, want %q", got, value)
		}

		want := string(rawValue)
		if len(want) > authz.MaxAuthorizationLen {
			want = want[:authz.MaxAuthorizationLen+1]
		}
		entry := &corev3.HeaderValue{Key: "authorization", RawValue: rawValue}
		if got := envoy.RequestFromCheck(httpCheck(nil, entry)).Authorization; got != want {
			t.Errorf("raw_value: Authorization = %q, want %q", got, want)
		}

		// A request with two Authorization headers never presents a key.
		for _, req := range []*authv3.CheckRequest{
			httpCheck(nil, entry, entry),
			httpCheck(map[string]string{"authorization": value}, entry),
		} {
			got := envoy.RequestFromCheck(req).Authorization
			if token, r := authz.BearerToken(got); r == authz.ReasonAllowed && authz.ValidSecret(token) {
				t.Errorf("two headers %q make a valid key", got)
			}
		}
	})
}
