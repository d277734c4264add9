package usage_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/usage"
)

const sse = "text/event-stream"

// recorded are the response fixtures in testdata and the usage each holds.
var recorded = []struct {
	file string
	want usage.Result
}{
	{"openai_chat.json", usage.Result{Model: "gpt-4o-mini-2024-07-18", Found: true,
		Tokens: usage.Tokens{Input: 2006 - 1920, CachedInput: 1920, Output: 300}}},
	{"openai_chat_stream.sse", usage.Result{Model: "gpt-4o-mini-2024-07-18", Found: true,
		Tokens: usage.Tokens{Input: 1234 - 1024, CachedInput: 1024, Output: 9}}},
	{"openai_chat_stream_no_usage.sse", usage.Result{Model: "gpt-4o-mini-2024-07-18"}},
	{"openai_completions.json", usage.Result{Model: "gpt-3.5-turbo-instruct", Found: true,
		Tokens: usage.Tokens{Input: 5, Output: 7}}},
	{"openai_completions_stream.sse", usage.Result{Model: "gpt-3.5-turbo-instruct", Found: true,
		Tokens: usage.Tokens{Input: 6, Output: 4}}},
	{"openai_embeddings.json", usage.Result{Model: "text-embedding-3-small", Found: true,
		Tokens: usage.Tokens{Input: 17}}},
	{"openai_responses.json", usage.Result{Model: "gpt-4.1-2025-04-14", Found: true,
		Tokens: usage.Tokens{Input: 3100 - 3072, CachedInput: 3072, Output: 11}}},
	{"openai_responses_stream.sse", usage.Result{Model: "o4-mini-2025-04-16", Found: true,
		Tokens: usage.Tokens{Input: 58, Output: 204}}},
	{"anthropic_messages.json", usage.Result{Model: "claude-sonnet-4-5-20250929", Found: true,
		Tokens: usage.Tokens{Input: 21, CachedInput: 2300, CacheWrite: 1100, Output: 13}}},
	{"anthropic_messages_stream.sse", usage.Result{Model: "claude-sonnet-4-5-20250929", Found: true,
		Tokens: usage.Tokens{Input: 472, CachedInput: 2048, Output: 89}}},
	// message_delta repeats the input and cache counts; the last delta's
	// zeros do not erase them, and its output (cumulative) replaces 40.
	{"anthropic_stream_delta_input.sse", usage.Result{Model: "claude-opus-4-1-20250805", Found: true,
		Tokens: usage.Tokens{Input: 3050, CachedInput: 1536, CacheWrite: 512, Output: 75}}},
	// Overloaded after message_start: only the first counts, not final.
	{"anthropic_stream_error.sse", usage.Result{Model: "claude-sonnet-4-5-20250929",
		Tokens: usage.Tokens{Input: 900, Output: 1}}},
}

func contentType(file string) string {
	if strings.HasSuffix(file, ".sse") {
		return sse
	}
	return "application/json"
}

// variants are the same stream written in the other ways the SSE format
// allows.
var variants = []struct {
	name string
	edit func(string) string
}{
	{"as recorded", func(s string) string { return s }},
	{"CRLF", func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }},
	{"CR", func(s string) string { return strings.ReplaceAll(s, "\n", "\r") }},
	{"BOM and comments", func(s string) string {
		return "\uFEFF: hello\n\n" + strings.ReplaceAll(s, "\n\n", "\n: keep-alive\nid: 7\nretry: 3000\nfoo\n\n:\n")
	}},
	{"multi-line data, no space", func(s string) string {
		return strings.ReplaceAll(s, "data: {", "data:{\ndata\ndata:   ")
	}},
}

func parse(t testing.TB, ct string, chunks ...[]byte) (usage.Result, error) {
	t.Helper()
	p := usage.NewParser(ct)
	for _, c := range chunks {
		if err := p.Write(c); err != nil {
			return p.Result(), err
		}
	}
	return p.Result(), nil
}

func read(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParserRecorded(t *testing.T) {
	for _, tc := range recorded {
		body := read(t, tc.file)
		vs := variants[:1]
		if contentType(tc.file) == sse {
			vs = variants
		}
		for _, v := range vs {
			t.Run(tc.file+"/"+v.name, func(t *testing.T) {
				b := []byte(v.edit(string(body)))
				if got, err := parse(t, contentType(tc.file), b); err != nil || got != tc.want {
					t.Fatalf("whole body: %+v, %v; want %+v", got, err, tc.want)
				}
				for i := range b { // every split in two
					if got, err := parse(t, contentType(tc.file), b[:i], b[i:]); err != nil || got != tc.want {
						t.Fatalf("split at %d: %+v, %v; want %+v", i, got, err, tc.want)
					}
				}
				bytewise := make([][]byte, len(b))
				for i := range b {
					bytewise[i] = b[i : i+1]
				}
				if got, err := parse(t, contentType(tc.file), bytewise...); err != nil || got != tc.want {
					t.Fatalf("1-byte chunks: %+v, %v; want %+v", got, err, tc.want)
				}
			})
		}
	}
}

func TestParserCases(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		want           usage.Result
	}{
		{"empty body", "application/json", "", usage.Result{}},
		{"root is an array", "application/json", `[{"usage":{"prompt_tokens":5}}]`, usage.Result{}},
		{"truncated JSON", "application/json", `{"usage":{"prompt_tokens":5}`, usage.Result{}},
		{"empty usage is not usage", "application/json", `{"usage":{}}`, usage.Result{}},
		{"null usage", "application/json", `{"usage":null,"model":"m"}`, usage.Result{Model: "m"}},
		{"null counts", "application/json", `{"usage":{"prompt_tokens":4,"prompt_tokens_details":{"cached_tokens":null},"completion_tokens":null}}`,
			usage.Result{Found: true, Tokens: usage.Tokens{Input: 4}}},
		{"total only", "application/json", `{"usage":{"total_tokens":10}}`, usage.Result{Found: true, Tokens: usage.Tokens{Input: 10}}},
		{"cached above prompt", "application/json", `{"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":5}}}`,
			usage.Result{Found: true, Tokens: usage.Tokens{CachedInput: 5}}},
		{"last duplicate wins", "application/json", `{"usage":{"prompt_tokens":1,"completion_tokens":5},"usage":{"prompt_tokens":2}}`,
			usage.Result{Found: true, Tokens: usage.Tokens{Input: 2}}},
		{"escaped key and model", "application/json", `{"m\u006fdel":"meta-llama\/Llama-3 \ud83e\udd99","us\u0061ge":{"prompt_tokens":3}}`,
			usage.Result{Model: "meta-llama/Llama-3 🦙", Found: true, Tokens: usage.Tokens{Input: 3}}},
		{"invalid UTF-8 in the model", "application/json", "{\"model\":\"a\xffb\"}", usage.Result{Model: "a\uFFFDb"}},
		{"usage in a nested object is not the response's", "application/json",
			`{"choices":[{"usage":{"prompt_tokens":9}}],"data":{"usage":{"prompt_tokens":9}}}`, usage.Result{}},
		{"charset parameter", "Text/Event-Stream; charset=utf-8", "data: {\"usage\":{\"prompt_tokens\":2}}\n\n",
			usage.Result{Found: true, Tokens: usage.Tokens{Input: 2}}},
		{"JSON content type reads no SSE", "application/json", "data: {\"usage\":{\"prompt_tokens\":2}}\n\n", usage.Result{}},
		{"event not ended by a blank line", sse, "data: {\"usage\":{\"prompt_tokens\":2}}\n", usage.Result{}},
		{"data that is not an object", sse, "data: [DONE]\n\ndata: \"x\"\n\ndata: 42\n\ndata:\n\ndata:  \n\n", usage.Result{}},
		{"field names are case-sensitive", sse, "Data: {\"usage\":{\"prompt_tokens\":2}}\n\n", usage.Result{}},
		{"a broken BOM starts an unknown field", sse, "\xEF\xBBdata: {\"usage\":{\"prompt_tokens\":2}}\n\ndata: {\"usage\":{\"completion_tokens\":1}}\n\n",
			usage.Result{Found: true, Tokens: usage.Tokens{Output: 1}}},
		{"OpenAI chunks with continuous usage: the last counts", sse,
			"data: {\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}\n\ndata: {\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n",
			usage.Result{Found: true, Tokens: usage.Tokens{Input: 7, Output: 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := parse(t, tc.ct, []byte(tc.body)); err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParserErrors(t *testing.T) {
	deep := `{"a":` + strings.Repeat("[", usage.MaxDepth) + strings.Repeat("]", usage.MaxDepth) + `}`
	for _, tc := range []struct {
		name, ct, body string
		want           error
	}{
		{"trailing comma", "application/json", `{"usage":{"prompt_tokens":1,}}`, usage.ErrMalformed},
		{"bad literal", "application/json", `{"a":nul}`, usage.ErrMalformed},
		{"bad escape", "application/json", `{"a":"\x"}`, usage.ErrMalformed},
		{"control character in a string", "application/json", "{\"a\":\"\t\"}", usage.ErrMalformed},
		{"bad number", "application/json", `{"a":01}`, usage.ErrMalformed},
		{"mismatched bracket", "application/json", `{"a":[1}`, usage.ErrMalformed},
		{"text after the object", "application/json", `{"usage":{"prompt_tokens":1}} x`, usage.ErrMalformed},
		{"fractional count", "application/json", `{"usage":{"prompt_tokens":1.5}}`, usage.ErrMalformed},
		{"exponent count", "application/json", `{"usage":{"completion_tokens":1e3}}`, usage.ErrMalformed},
		{"negative count", "application/json", `{"usage":{"prompt_tokens":-1}}`, usage.ErrMalformed},
		{"count as a string", "application/json", `{"usage":{"prompt_tokens":"1"}}`, usage.ErrMalformed},
		{"count above int64", "application/json", `{"usage":{"prompt_tokens":9223372036854775808}}`, usage.ErrMalformed},
		{"too deep", "application/json", deep, usage.ErrLimit},
		{"model too long", "application/json", `{"model":"` + strings.Repeat("m", usage.MaxModelLen+1) + `"}`, usage.ErrLimit},
		{"event data ends inside JSON", sse, "data: {\"usage\":\n\n", usage.ErrMalformed},
		{"multi-line data splitting a string", sse, "data: {\"model\":\"a\ndata: b\"}\n\n", usage.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := usage.NewParser(tc.ct)
			err := p.Write([]byte(tc.body))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Write = %v, want %v", err, tc.want)
			}
			if again := p.Write([]byte("{}")); again != err {
				t.Fatalf("Write after an error = %v, want the same %v", again, err)
			}
		})
	}
	// Exactly MaxDepth is accepted.
	ok := `{"a":` + strings.Repeat("[", usage.MaxDepth-1) + strings.Repeat("]", usage.MaxDepth-1) + `}`
	if _, err := parse(t, "application/json", []byte(ok)); err != nil {
		t.Fatalf("depth %d: %v", usage.MaxDepth, err)
	}
}

// TestParserResultBeforeError shows that the usage read before an error
// stays.
func TestParserResultBeforeError(t *testing.T) {
	body := "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":2}}\n\ndata: {oops}\n\n"
	got, err := parse(t, sse, []byte(body))
	want := usage.Result{Model: "m", Found: true, Tokens: usage.Tokens{Input: 2}}
	if !errors.Is(err, usage.ErrMalformed) || got != want {
		t.Fatalf("got %+v, %v; want %+v and ErrMalformed", got, err, want)
	}
}

func TestParserReset(t *testing.T) {
	p := usage.NewParser(sse)
	if err := p.Write(read(t, "openai_chat_stream.sse")); err != nil {
		t.Fatal(err)
	}
	p.Reset("application/json")
	if err := p.Write(read(t, "anthropic_messages.json")); err != nil {
		t.Fatal(err)
	}
	if got, want := p.Result(), recorded[8].want; got != want {
		t.Fatalf("after Reset: %+v, want %+v", got, want)
	}
}

// chatStream is an OpenAI chat stream of n content chunks and a usage chunk,
// one event per chunk as the upstream sends them.
func chatStream(n int) [][]byte {
	var chunks [][]byte
	for i := range n {
		chunks = append(chunks, []byte(`data: {"id":"chatcmpl-kg81","object":"chat.completion.chunk","created":1767225601,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_b8bc95a0ac","choices":[{"index":0,"delta":{"content":" word`+strings.Repeat("x", i%7)+`"},"logprobs":null,"finish_reason":null}],"usage":null}`+"\n\n"))
	}
	chunks = append(chunks,
		[]byte(`data: {"id":"chatcmpl-kg81","object":"chat.completion.chunk","created":1767225601,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":1234,"completion_tokens":100,"total_tokens":1334,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}`+"\n\n"),
		[]byte("data: [DONE]\n\n"))
	return chunks
}

// TestParserAllocs: a reused Parser allocates only the model string of its
// Result.
func TestParserAllocs(t *testing.T) {
	chunks := chatStream(100)
	p := usage.NewParser(sse)
	allocs := testing.AllocsPerRun(20, func() {
		p.Reset(sse)
		for _, c := range chunks {
			if err := p.Write(c); err != nil {
				t.Fatal(err)
			}
		}
		if r := p.Result(); r.Tokens.Output != 100 {
			t.Fatalf("Result = %+v", r)
		}
	})
	if allocs > 1 {
		t.Fatalf("%v allocations per 100-chunk stream, want at most 1", allocs)
	}
}

func BenchmarkParserSSE100(b *testing.B) {
	chunks := chatStream(100)
	b.SetBytes(int64(len(bytes.Join(chunks, nil))))
	b.ReportAllocs()
	p := usage.NewParser(sse)
	for b.Loop() {
		p.Reset(sse)
		for _, c := range chunks {
			if err := p.Write(c); err != nil {
				b.Fatal(err)
			}
		}
		_ = p.Result()
	}
}

func BenchmarkParserJSON(b *testing.B) {
	body := read(b, "openai_chat.json")
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	p := usage.NewParser("application/json")
	for b.Loop() {
		p.Reset("application/json")
		if err := p.Write(body); err != nil {
			b.Fatal(err)
		}
		_ = p.Result()
	}
}
