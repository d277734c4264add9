package usage_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/keygate/keygate/usage"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       usage.Request
	}{
		{"chat stream", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":256}`,
			usage.Request{Model: "gpt-4o", Stream: true, IncludeUsage: true, MaxOutputTokens: 256}},
		{"chat, deprecated max_tokens", `{"model":"gpt-4o","messages":[],"max_tokens":100}`,
			usage.Request{Model: "gpt-4o", MaxOutputTokens: 100}},
		{"both limits: the larger", `{"model":"m","max_tokens":100,"max_completion_tokens":300}`,
			usage.Request{Model: "m", MaxOutputTokens: 300}},
		{"completions", `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7,"stream":false}`,
			usage.Request{Model: "gpt-3.5-turbo-instruct", MaxOutputTokens: 7}},
		{"responses", `{"model":"o4-mini","input":"Tell me a joke","stream":true,"max_output_tokens":512,"reasoning":{"effort":"low"}}`,
			usage.Request{Model: "o4-mini", Stream: true, MaxOutputTokens: 512}},
		{"embeddings", `{"model":"text-embedding-3-small","input":["a","b"],"encoding_format":"float"}`,
			usage.Request{Model: "text-embedding-3-small"}},
		{"anthropic messages", `{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hello","cache_control":{"type":"ephemeral"}}]}],"stream":true}`,
			usage.Request{Model: "claude-sonnet-4-5", Stream: true, MaxOutputTokens: 1024}},
		{"nulls", `{"model":null,"stream":null,"stream_options":null,"max_tokens":null}`, usage.Request{}},
		{"include_usage false", `{"model":"m","stream":true,"stream_options":{"include_usage":false}}`,
			usage.Request{Model: "m", Stream: true}},
		{"escaped model", `{"model":"meta-llama\/Llama-3.1-8B-Instruct \u00e9"}`,
			usage.Request{Model: "meta-llama/Llama-3.1-8B-Instruct é"}},
		{"nested fields are not the request's", `{"model":"m","metadata":{"model":"x","max_tokens":5,"stream":true}}`,
			usage.Request{Model: "m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := usage.ParseRequest([]byte(tc.body))
			if err != nil || got != tc.want {
				t.Fatalf("ParseRequest = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	for _, body := range []string{
		``, `[]`, `"x"`, `{"model":"m"`, `{"model":"m"} {}`,
		`{"model":5}`, `{"stream":"true"}`, `{"stream_options":{"include_usage":1}}`,
		`{"max_tokens":1.5}`, `{"max_tokens":-1}`, `{"max_output_tokens":"100"}`,
		`{"max_completion_tokens":99999999999999999999}`,
	} {
		if r, err := usage.ParseRequest([]byte(body)); !errors.Is(err, usage.ErrMalformed) {
			t.Errorf("ParseRequest(%s) = %+v, %v; want ErrMalformed", body, r, err)
		}
	}
}

func TestIncludeUsage(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string // want "" means unchanged
	}{
		{"absent", `{"model":"gpt-4o","messages":[],"stream":true}`,
			`{"stream_options":{"include_usage":true},"model":"gpt-4o","messages":[],"stream":true}`},
		{"absent, completions", ` { "prompt" : "x", "stream" : true } `,
			` {"stream_options":{"include_usage":true}, "prompt" : "x", "stream" : true } `},
		{"empty options", `{"messages":[],"stream":true,"stream_options":{ }}`,
			`{"messages":[],"stream":true,"stream_options":{"include_usage":true }}`},
		{"other options", `{"messages":[],"stream":true,"stream_options":{"continuous_usage_stats":true}}`,
			`{"messages":[],"stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true}}`},
		{"false", `{"messages":[],"stream":true,"stream_options":{"include_usage":false}}`,
			`{"messages":[],"stream":true,"stream_options":{"include_usage":true}}`},
		{"null", `{"messages":[],"stream":true,"stream_options":{"include_usage": null }}`,
			`{"messages":[],"stream":true,"stream_options":{"include_usage": true }}`},
		{"null options", `{"messages":[],"stream_options":null,"stream":true}`,
			`{"messages":[],"stream_options":{"include_usage":true},"stream":true}`},
		{"last duplicate counts", `{"messages":[],"stream":true,"stream_options":{"include_usage":true},"stream_options":{}}`,
			`{"messages":[],"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":true}}`},
		{"already true", `{"messages":[],"stream":true,"stream_options":{"include_usage":true}}`, ""},
		{"not a stream", `{"messages":[],"stream":false}`, ""},
		{"no stream field", `{"messages":[]}`, ""},
		{"responses API", `{"input":"hi","stream":true}`, ""},
		{"embeddings", `{"model":"text-embedding-3-small","input":"hi"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, changed, err := usage.IncludeUsage([]byte(tc.body))
			want := tc.want
			if want == "" {
				want = tc.body
			}
			if err != nil || changed != (tc.want != "") || string(got) != want {
				t.Fatalf("IncludeUsage = %s, %v, %v; want %s, %v", got, changed, err, want, tc.want != "")
			}
			if r, err := usage.ParseRequest(got); changed && (err != nil || !r.IncludeUsage) {
				t.Fatalf("the changed body reads %+v, %v", r, err)
			}
		})
	}
	if _, _, err := usage.IncludeUsage([]byte(`{"stream":true,`)); !errors.Is(err, usage.ErrMalformed) {
		t.Fatalf("IncludeUsage of a truncated body: %v, want ErrMalformed", err)
	}
}

// TestIncludeUsagePreserves: every other field keeps its exact value, big
// integers and long decimals included, which a round trip through float64
// would change.
func TestIncludeUsagePreserves(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","seed":123456789012345678901234567890,"temperature":0.10000000000000000555,` +
		`"logit_bias":{"50256":-100},"messages":[{"role":"user","content":"caf\u00e9 \"q\" <b>&amp;</b>"}],` +
		`"x_vendor":{"nested":[1e400,-0.0,{"deep":null}]},"stream":true,"stream_options":{"x":[1,2]}}`)
	got, changed, err := usage.IncludeUsage(body)
	if err != nil || !changed {
		t.Fatalf("IncludeUsage: %v, %v", changed, err)
	}
	decode := func(b []byte) map[string]any {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	before, after := decode(body), decode(got)
	opts := after["stream_options"].(map[string]any)
	if opts["include_usage"] != true || !reflect.DeepEqual(opts["x"], before["stream_options"].(map[string]any)["x"]) {
		t.Fatalf("stream_options = %v", opts)
	}
	delete(before, "stream_options")
	delete(after, "stream_options")
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("fields changed:\n%v\n%v", before, after)
	}
	if after["seed"] != json.Number("123456789012345678901234567890") || after["temperature"] != json.Number("0.10000000000000000555") {
		t.Fatalf("numbers changed: %v %v", after["seed"], after["temperature"])
	}
}

func BenchmarkParseRequest(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"` +
		string(bytes.Repeat([]byte("Tell me about the weather in Paris. "), 100)) + `"}],"stream":true,"max_completion_tokens":512}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := usage.ParseRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}
